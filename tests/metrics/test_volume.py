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


def test_through_plane_delta_measures_slice_to_slice_jumps_inside_the_mask():
    from medm2g_cli.metrics.volume import through_plane_delta, through_plane_ratio

    z = np.arange(7, dtype=np.float32)
    ramp = np.broadcast_to(2.0 * z, (4, 5, 7)).copy()  # smooth anatomy: +2 per slice
    mask = np.ones(ramp.shape, bool)
    assert through_plane_delta(ramp, mask) == 2.0
    jumpy = ramp + np.where(z % 2 == 0, 0.0, 6.0)  # the same anatomy with alternate slices offset
    assert through_plane_delta(jumpy, mask) == 6.0  # |2 + 6|, |2 - 6|, ... -> 8, 4, 8, 4, 8, 4
    r = through_plane_ratio(jumpy, ramp, mask)
    assert r == {"output": 6.0, "truth": 2.0, "ratio": 3.0}
    # only pairs with both voxels inside the mask count: a jump into the background is not scored
    outside = ramp.copy()
    outside[:, :, 6] = 1000.0
    mask[:, :, 6] = False
    assert through_plane_delta(outside, mask) == 2.0
    assert np.isnan(through_plane_delta(ramp, np.zeros(ramp.shape, bool)))


def test_sharpness_ratio_scores_blur_below_one_and_ignores_the_background():
    from scipy.ndimage import uniform_filter

    from medm2g_cli.metrics.volume import in_plane_gradient, sharpness_ratio, through_plane_ratio

    rng = np.random.default_rng(0)
    truth = np.repeat(rng.normal(size=(16, 16, 1)), 5, axis=2)  # in-plane detail, identical slices
    mask = np.ones(truth.shape, bool)
    blurred = uniform_filter(truth, size=(3, 3, 1))
    # the through-plane ratio cannot see the blur (both are perfectly smooth across slices) ...
    assert through_plane_ratio(blurred, truth, mask)["output"] == 0.0
    # ... the in-plane one does
    r = sharpness_ratio(blurred, truth, mask)
    assert r["ratio"] < 0.6 and sharpness_ratio(truth, truth, mask)["ratio"] == 1.0
    assert sharpness_ratio(truth + rng.normal(0, 1, truth.shape), truth, mask)["ratio"] > 1.2  # noise scores above 1
    # hand-computed: a ramp along x (+1 per voxel) and constant along y -> mean of 1s and 0s
    ramp = np.broadcast_to(np.arange(4.0)[:, None, None], (4, 3, 2)).copy()
    full = np.ones(ramp.shape, bool)
    assert in_plane_gradient(ramp, full) == (3 * 3 * 2 * 1.0 + 4 * 2 * 2 * 0.0) / (3 * 3 * 2 + 4 * 2 * 2)
    # pairs with a voxel outside the mask are not scored: an edge into the background is not detail
    edge = ramp.copy()
    edge[3] = 1000.0
    inner = full.copy()
    inner[3] = False
    assert in_plane_gradient(edge, inner) == in_plane_gradient(ramp, inner)
    assert np.isnan(in_plane_gradient(ramp, np.zeros(ramp.shape, bool)))
