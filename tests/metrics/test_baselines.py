"""The demo's baselines: the global intensity map is the per-bin statistic, and the autoencoder round
trip goes through the real decoder on the pipelines' grid."""

from __future__ import annotations

import numpy as np

from medm2g_cli.metrics.baselines import GlobalMap, autoencoder_roundtrip


def test_global_map_is_the_per_bin_statistic():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 5000)
    y = np.where(x > 0, 100.0, -50.0) + rng.normal(0, 1, x.size)
    g = GlobalMap(16, "median").fit([x], y)
    pred = g([x])
    assert np.abs(pred - y).mean() < 2.0  # a step function is representable exactly (bin edge at 0)
    two = GlobalMap(8, "mean").fit([x, -x], y)
    assert np.abs(two([x, -x]) - y).mean() < 2.0



def test_autoencoder_roundtrip_keeps_the_grid_and_goes_through_the_decoder():
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    model = MedM2G.from_preset("tiny", seed=0, modalities=("ct",)).eval()
    ct = np.random.default_rng(0).uniform(-1000, 1500, size=(37, 29, 5)).astype(np.float32)
    rt = autoencoder_roundtrip(model, ct, "ct", batch=2)
    assert rt.shape == ct.shape and np.isfinite(rt).all()
    # a decoder that outputs 0 (the middle of the CT window [-1024, 2048]) everywhere: the floor is 512 HU
    conv = model.vae("ct").decoder.conv_out
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
    np.testing.assert_allclose(autoencoder_roundtrip(model, ct, "ct"), 512.0, atol=1e-3)
