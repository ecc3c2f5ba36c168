"""Volume <-> 2-D slices along an anatomical axis, and streaming slice batches. Numpy only.

Slices are taken on the canonical (RAS) grid so "axial" always means the same thing whatever the
file's orientation; :func:`slices_to_volume` puts them back on the original grid with the original
affine (exact inverse, no resampling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError, InputError
from ..io.orientation import AXES, to_canonical
from ..io.volume import Volume


@dataclass
class SliceInfo:
    """What :func:`slices_to_volume` needs to rebuild the volume."""

    axis: str
    canonical: Volume
    undo: Callable[[Volume], Volume] = field(repr=False)

    @property
    def n_slices(self) -> int:
        return int(self.canonical.array.shape[AXES[self.axis]])

    @property
    def slice_shape(self) -> tuple[int, int]:
        s = self.canonical.array.shape
        a = AXES[self.axis]
        return tuple(int(v) for i, v in enumerate(s[:3]) if i != a)  # type: ignore[return-value]


def axis_index(axis: str) -> int:
    """Canonical array axis of an anatomical plane name (axial, coronal, sagittal)."""
    if axis not in AXES:
        raise InputError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    return AXES[axis]


def array_to_slices(arr: np.ndarray, axis: int) -> np.ndarray:
    """Move ``axis`` of a 3-D array first: (n, a, b)."""
    return np.moveaxis(np.asarray(arr), axis, 0)


def slices_to_array(slices: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`array_to_slices`."""
    return np.moveaxis(np.asarray(slices), 0, axis)


def volume_to_slices(vol: Volume, axis: str = "axial") -> tuple[np.ndarray, SliceInfo]:
    """Slices (n, a, b) of ``vol`` along ``axis`` on the RAS grid, plus the info to put them back."""
    ax = axis_index(axis)
    if np.asarray(vol.array).ndim != 3:
        raise GeometryError(f"cannot slice an array of shape {vol.shape}", "give a 3-D volume")
    canon, undo = to_canonical(vol)
    return array_to_slices(canon.array, ax), SliceInfo(axis, canon, undo)


def slices_to_volume(slices: np.ndarray | list[np.ndarray], info: SliceInfo, modality: str | None = None) -> Volume:
    """Reassemble slices (n, a, b) into a volume on the original grid with the original affine."""
    stack = np.stack(list(slices), axis=0) if isinstance(slices, list) else np.asarray(slices)
    expect = (info.n_slices, *info.slice_shape)
    if tuple(stack.shape[:3]) != expect:
        raise GeometryError(f"slices of shape {stack.shape} do not match the grid {expect}",
                            "resize model outputs back to the slice size before reassembly")
    canon = info.canonical.with_array(slices_to_array(stack, axis_index(info.axis)), modality=modality)
    return info.undo(canon)


def iter_slice_batches(slices: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start index, batch) over the first axis in batches of ``batch_size`` (views, no copies)."""
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} is not positive", "use --batch-size 1 or more")
    n = len(slices)
    for start in range(0, n, batch_size):
        yield start, slices[start : start + batch_size]
