"""Whole-volume scores of one output against its truth (the demo's and the speed figure's protocol).

* :func:`mae_hu` — MAE in HU inside a mask (MRI -> CT);
* :func:`psnr_volume` — the default protocol's PSNR over chosen axial slices (contrast synthesis).
"""

from __future__ import annotations

import numpy as np

from .image import psnr_slices
from .protocols import CT_HU_RANGE, normalise_default


def mae_hu(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error in HU inside ``mask``."""
    return float(np.abs(pred[mask] - ref[mask]).mean())


def psnr_volume(pred: np.ndarray, ref: np.ndarray, mask_slices: np.ndarray) -> float:
    """PSNR with the default protocol (negatives clipped, each volume / its max, data range 1),
    per axial slice over ``mask_slices`` then averaged (the subject's value)."""
    p = normalise_default(pred.astype(np.float64), "mri", CT_HU_RANGE)
    r = normalise_default(ref.astype(np.float64), "mri", CT_HU_RANGE)
    ks = np.flatnonzero(mask_slices)
    return float(np.mean(psnr_slices(np.moveaxis(p[:, :, ks], 2, 0), np.moveaxis(r[:, :, ks], 2, 0), 1.0)))
