"""Per-slice PSNR, SSIM and MAE in numpy/scipy, vectorised over a stack of slices.

The functions take stacks shaped ``(n_slices, H, W)`` and return one value per slice. They are
tested to equal scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=...)`` slice by slice — the Wang et al. (2004) settings that MATLAB and torchmetrics use.
"""

from __future__ import annotations

import numpy as np

# Wang et al. 2004 constants, as scikit-image uses them.
K1 = 0.01
K2 = 0.03
SIGMA = 1.5
TRUNCATE = 3.5  # scikit-image's truncate for the Gaussian window -> an 11x11 window at sigma 1.5


def _as_stack(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected (H, W) or (n, H, W) arrays, got shape {a.shape}")
    return a


def psnr_slices(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR per slice, ``10 log10(data_range^2 / MSE)`` (scikit-image's formula); +inf where MSE is 0."""
    p, r = _as_stack(pred), _as_stack(ref)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    mse = ((r - p) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10((data_range**2) / mse)


def ssim_slices(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, sigma: float = SIGMA) -> np.ndarray:
    """Gaussian-window SSIM per slice, matching scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (K1 0.01, K2 0.03).

    The local statistics are Gaussian-filtered in-plane only (sigma 0 along the slice axis, so one
    ``gaussian_filter`` call handles the whole stack); like scikit-image, the mean SSIM excludes a
    border of ``(win_size - 1) // 2`` pixels where the window leaves the image.
    """
    from scipy.ndimage import gaussian_filter

    p, r = _as_stack(pred), _as_stack(ref)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    win = 2 * int(TRUNCATE * sigma + 0.5) + 1
    if min(p.shape[1:]) < win:
        raise ValueError(f"slices of {p.shape[1:]} are smaller than the {win}x{win} SSIM window")

    def filt(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=(0.0, sigma, sigma), truncate=TRUNCATE, mode="reflect")

    ux, uy = filt(r), filt(p)
    uxx, uyy, uxy = filt(r * r), filt(p * p), filt(r * p)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def mae_slices(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute error per slice, inside ``mask`` when given (NaN for slices with an empty mask)."""
    p, r = _as_stack(pred), _as_stack(ref)
    err = np.abs(p - r)
    if mask is None:
        return err.mean(axis=(1, 2))
    m = _as_stack(mask) > 0
    n = m.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (err * m).sum(axis=(1, 2)) / np.maximum(n, 1), np.nan)


def mean_std(values: np.ndarray | list[float]) -> tuple[float, float]:
    """Mean and population std (numpy's default, ddof=0) of finite values; NaN when none are finite."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std())
