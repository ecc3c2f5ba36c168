"""Canonical (RAS) reorientation and its exact inverse — the one implementation of it.

Models see volumes in one orientation; outputs must go back on the input grid. Reorienting only
permutes/flips array axes (no resampling). Two levels share the same orientation arithmetic:

- :func:`to_canonical_array` / :func:`from_canonical_array` work on bare arrays and return *views*
  (no copy), which inference uses to stream slices and write outputs in place;
- :func:`to_canonical` works on a :class:`Volume` and returns an ``undo`` function that restores
  the original array order *and the original affine bit-for-bit* (it is stored, not recomputed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .volume import Volume

AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Array axis of each anatomical plane's normal in canonical RAS order."""


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation array mapping the voxel axes of ``affine`` to RAS (row ``i``: the RAS
    axis array axis ``i`` lies along, and its flip). Oblique affines map to their closest axes."""
    import nibabel.orientations as nio

    return nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt("RAS"))


def to_canonical_array(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` reoriented to RAS as a view (axis permutations and flips only, no copy; writing
    into it writes into ``array``) and the orientation used, for :func:`from_canonical_array`."""
    import nibabel.orientations as nio

    ornt = canonical_ornt(affine)
    return nio.apply_orientation(array, ornt), ornt


def from_canonical_array(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`to_canonical_array` (back to the input's voxel order, contiguous)."""
    import nibabel.orientations as nio

    return np.ascontiguousarray(nio.apply_orientation(array, _invert(ornt)))


def to_canonical(vol: Volume) -> tuple[Volume, Callable[[Volume], Volume]]:
    """Reorient ``vol`` to RAS by axis permutation/flip; return it and the exact inverse.

    ``undo(v)`` takes a volume on the canonical grid (same shape, e.g. a model output) and returns it
    on the original grid with the original affine. Extra trailing array dims are carried along.
    """
    import nibabel.orientations as nio

    arr = np.asarray(vol.array)
    arr3 = arr.reshape(arr.shape + (1,) * (3 - arr.ndim)) if arr.ndim < 3 else arr
    new_arr, ornt = to_canonical_array(arr3, vol.affine)
    new_aff = vol.affine @ nio.inv_ornt_aff(ornt, arr3.shape[:3])
    orig_affine = vol.affine.copy()
    orig_ndim = arr.ndim

    def undo(canon: Volume) -> Volume:
        a = from_canonical_array(np.asarray(canon.array), ornt)
        if orig_ndim < 3:
            a = a.reshape(a.shape[:orig_ndim] + a.shape[3:]) if a.shape[orig_ndim:3] == (1,) * (3 - orig_ndim) else a
        return replace(canon, array=a, affine=orig_affine.copy(), meta=dict(canon.meta))

    canon = replace(vol, array=np.ascontiguousarray(new_arr), affine=new_aff, meta=dict(vol.meta))
    return canon, undo


def _invert(ornt: np.ndarray) -> np.ndarray:
    """Inverse of a nibabel orientation (axis permutation + flips)."""
    inv = np.zeros_like(ornt)
    for src_axis, (dst_axis, flip) in enumerate(ornt):
        inv[int(dst_axis)] = (src_axis, flip)
    return inv
