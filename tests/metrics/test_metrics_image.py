"""PSNR/SSIM/MAE equal scikit-image's with the Wang et al. settings, slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medm2g_cli.metrics.image import mae_slices, mean_std, psnr_slices, ssim_slices


@pytest.fixture(scope="module")
def stacks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:33] / 40.0
    ref = np.stack([np.clip(np.sin(6 * xx + k) * np.cos(4 * yy) * 0.5 + 0.5, 0, 1) for k in range(4)])
    pred = np.clip(ref + rng.normal(0, 0.08, ref.shape), 0, 1)
    pred[2] = ref[2] * 0.7  # a contrast change, not only noise
    return pred, ref


def test_ssim_equals_skimage_gaussian(stacks):
    pred, ref = stacks
    ours = ssim_slices(pred, ref, data_range=1.0)
    theirs = [structural_similarity(r, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
              for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    assert len(set(np.round(ours, 6))) == 4  # the slices really differ


def test_ssim_other_data_range_and_identity(stacks):
    pred, ref = stacks
    ours = ssim_slices(pred * 100, ref * 100, data_range=100.0)
    theirs = [structural_similarity(r, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=100.0)
              for p, r in zip(pred * 100, ref * 100, strict=True)]
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    np.testing.assert_allclose(ssim_slices(ref, ref), 1.0, atol=1e-12)


def test_psnr_equals_skimage(stacks):
    pred, ref = stacks
    ours = psnr_slices(pred, ref, 1.0)
    theirs = [peak_signal_noise_ratio(r, p, data_range=1.0) for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    assert np.isinf(psnr_slices(ref, ref)).all()


def test_small_slices_rejected():
    with pytest.raises(ValueError, match="smaller than"):
        ssim_slices(np.zeros((1, 8, 30)), np.zeros((1, 8, 30)))


def test_mae_inside_mask_by_hand():
    ref = np.zeros((2, 2, 2))
    pred = np.array([[[10.0, 0.0], [0.0, -30.0]], [[1.0, 1.0], [1.0, 1.0]]])
    mask = np.array([[[1, 0], [0, 1]], [[0, 0], [0, 0]]])
    out = mae_slices(pred, ref, mask)
    assert out[0] == pytest.approx(20.0)  # (10 + 30) / 2
    assert np.isnan(out[1])  # empty mask: not a zero error
    assert mae_slices(pred, ref)[1] == pytest.approx(1.0)


def test_mean_std_population_and_nonfinite():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert mean_std([1.0, np.inf, 3.0]) == (2.0, 1.0)
    m, s = mean_std([np.nan])
    assert np.isnan(m) and np.isnan(s)
