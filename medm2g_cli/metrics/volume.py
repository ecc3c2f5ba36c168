"""Whole-volume scores of one output against its truth (the demo's and the speed figure's protocol).

* :func:`mae_hu` — MAE in HU inside a mask (MRI -> CT);
* :func:`psnr_volume` — the default protocol's PSNR over chosen axial slices (contrast synthesis);
* :func:`through_plane_delta` / :func:`through_plane_ratio` — slice-to-slice consistency (mean |dz|);
* :func:`in_plane_gradient` / :func:`sharpness_ratio` — in-plane detail (mean |dx|, |dy|): a blurred
  output scores below the truth, which neither PSNR nor the through-plane ratio penalises.
"""

from __future__ import annotations

import numpy as np

from .image import psnr_slices
from .protocols import CT_HU_RANGE, normalise_default

THROUGH_PLANE_TARGET = 1.3
"""Issue 18's target: the output's mean |dz| inside the head at most this multiple of the truth's."""


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


def through_plane_delta(vol: np.ndarray, mask: np.ndarray) -> float:
    """Mean |v[..., k+1] - v[..., k]| over neighbouring axial slices, at voxels inside ``mask`` in both.

    Slice-by-slice (2-D) generation shows as jumps between neighbouring slices: compared with the
    same number on the truth (:func:`through_plane_ratio`) it says how much of the output's
    through-plane variation is not anatomy. NaN when no voxel pair lies inside the mask.
    """
    v = np.asarray(vol, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if v.shape != m.shape or v.ndim != 3:
        raise ValueError(f"expected a 3-D volume and a mask of its shape, got {v.shape} and {m.shape}")
    pair = m[:, :, 1:] & m[:, :, :-1]
    if not pair.any():
        return float("nan")
    return float(np.abs(np.diff(v, axis=2))[pair].mean())


def through_plane_ratio(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, per_max: bool = False) -> dict[str, float]:
    """{output, truth, ratio}: :func:`through_plane_delta` of ``pred`` and of ``ref`` and their ratio
    (1 = as smooth across slices as the truth; the issue-18 target is :data:`THROUGH_PLANE_TARGET`).
    Both volumes must be on one intensity scale: HU for CT as they are; ``per_max`` for MRI (each
    volume's negatives clipped and divided by its maximum, as :func:`psnr_volume` does)."""
    if per_max:
        pred = normalise_default(np.asarray(pred, np.float64), "mri", CT_HU_RANGE)
        ref = normalise_default(np.asarray(ref, np.float64), "mri", CT_HU_RANGE)
    out, truth = through_plane_delta(pred, mask), through_plane_delta(ref, mask)
    return {"output": out, "truth": truth, "ratio": out / truth if truth > 0 else float("nan")}


def in_plane_gradient(vol: np.ndarray, mask: np.ndarray) -> float:
    """Mean |difference| between in-plane neighbours (both axes of every axial slice), at voxel pairs
    inside ``mask`` in both. NaN when no pair lies inside the mask."""
    v = np.asarray(vol, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if v.shape != m.shape or v.ndim != 3:
        raise ValueError(f"expected a 3-D volume and a mask of its shape, got {v.shape} and {m.shape}")
    diffs = [np.abs(np.diff(v, axis=a))[m.take(range(1, v.shape[a]), axis=a) & m.take(range(v.shape[a] - 1), axis=a)]
             for a in (0, 1)]
    n = sum(d.size for d in diffs)
    return float(sum(d.sum() for d in diffs) / n) if n else float("nan")


def sharpness_ratio(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, per_max: bool = False) -> dict[str, float]:
    """{output, truth, ratio}: :func:`in_plane_gradient` of ``pred`` and of ``ref`` and their ratio
    (1 = as much in-plane detail as the truth; below 1 blurred, above 1 noisier or over-sharpened).
    Intensity scales as for :func:`through_plane_ratio` (``per_max`` for MRI)."""
    if per_max:
        pred = normalise_default(np.asarray(pred, np.float64), "mri", CT_HU_RANGE)
        ref = normalise_default(np.asarray(ref, np.float64), "mri", CT_HU_RANGE)
    out, truth = in_plane_gradient(pred, mask), in_plane_gradient(ref, mask)
    return {"output": out, "truth": truth, "ratio": out / truth if truth > 0 else float("nan")}
