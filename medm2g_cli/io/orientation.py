"""Canonical (RAS) reorientation and its exact inverse.

Models see volumes in one orientation; outputs must go back on the input grid. ``to_canonical``
only permutes/flips array axes (no resampling), and the ``undo`` function it returns restores the
original array order *and the original affine bit-for-bit* (it is stored, not recomputed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .volume import Volume

AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Array axis of each anatomical plane's normal in canonical RAS order."""


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation array mapping the voxel axes of ``affine`` to RAS."""
    import nibabel.orientations as nio

    return nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt("RAS"))


def to_canonical(vol: Volume) -> tuple[Volume, Callable[[Volume], Volume]]:
    """Reorient ``vol`` to RAS by axis permutation/flip; return it and the exact inverse.

    ``undo(v)`` takes a volume on the canonical grid (same shape, e.g. a model output) and returns it
    on the original grid with the original affine. Extra trailing array dims are carried along.
    """
    import nibabel.orientations as nio

    arr = np.asarray(vol.array)
    if arr.ndim < 3:
        arr3 = arr.reshape(arr.shape + (1,) * (3 - arr.ndim))
    else:
        arr3 = arr
    ornt = canonical_ornt(vol.affine)
    shape3 = arr3.shape[:3]
    new_arr = nio.apply_orientation(arr3, ornt)
    new_aff = vol.affine @ nio.inv_ornt_aff(ornt, shape3)
    orig_affine = vol.affine.copy()
    orig_ndim = arr.ndim
    back = _invert(ornt)  # the inverse axis permutation/flip

    def undo(canon: Volume) -> Volume:
        a = nio.apply_orientation(np.asarray(canon.array), back)
        if orig_ndim < 3:
            a = a.reshape(a.shape[:orig_ndim] + a.shape[3:]) if a.shape[orig_ndim:3] == (1,) * (3 - orig_ndim) else a
        return replace(canon, array=np.ascontiguousarray(a), affine=orig_affine.copy(), meta=dict(canon.meta))

    canon = replace(vol, array=np.ascontiguousarray(new_arr), affine=new_aff, meta=dict(vol.meta))
    return canon, undo


def _invert(ornt: np.ndarray) -> np.ndarray:
    """Inverse of a nibabel orientation (axis permutation + flips)."""
    inv = np.zeros_like(ornt)
    for src_axis, (dst_axis, flip) in enumerate(ornt):
        inv[int(dst_axis)] = (src_axis, flip)
    return inv
