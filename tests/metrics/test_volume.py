"""Whole-volume scores: MAE in HU inside a mask and the default-protocol PSNR over chosen slices."""

from __future__ import annotations

import numpy as np

from medm2g_cli.metrics.volume import mae_hu, psnr_volume


def test_psnr_volume_default_protocol():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 100, (8, 8, 4)).astype(np.float32)
    assert psnr_volume(ref * 3, ref, np.ones(4, bool)) > 100  # scale-invariant: each volume / its max
    assert psnr_volume(ref + rng.normal(0, 5, ref.shape), ref, np.ones(4, bool)) < 40


def test_mae_hu_only_counts_the_mask():
    ref = np.zeros((4, 4, 2), np.float32)
    pred = ref.copy()
    pred[0] = 100.0
    mask = np.zeros(ref.shape, bool)
    mask[1:] = True
    assert mae_hu(pred, ref, mask) == 0.0
    mask[0, 0, 0] = True
    assert mae_hu(pred, ref, mask) == 100.0 / mask.sum()
