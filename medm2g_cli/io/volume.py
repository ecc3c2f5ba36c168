"""The ``Volume`` type: pixels and geometry that never travel apart.

io/ is numpy + geometry only: it never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 2-D or 3-D image with its geometry.

    ``array`` is indexed (i, j, k) in voxel order; ``affine`` maps voxel indices to RAS+ world
    millimetres (NIfTI convention; DICOM/ITK LPS is converted on read and back on write).
    ``spacing`` and ``orientation`` are derived from the affine and kept for convenience.
    ``meta`` holds source metadata (DICOM study/patient module, NIfTI header fields, file path)
    that writers may carry over; it never holds pixel data.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(float(x) for x in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Three-letter orientation code of the array axes, e.g. 'RAS' or 'LPS' (nibabel convention)."""
        return orientation_code(self.affine)

    def with_array(self, array: np.ndarray, modality: str | None = None) -> Volume:
        """A new Volume on the same grid with other pixels (e.g. a model output)."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array shape {array.shape} does not match grid {self.array.shape}")
        return replace(self, array=array, modality=modality or self.modality, meta=dict(self.meta))


def orientation_code(affine: np.ndarray) -> str:
    """Orientation code ('RAS', 'LPS', ...) of an affine, following nibabel.aff2axcodes."""
    import nibabel as nib  # light; kept local so importing Volume stays cheap

    return "".join(nib.aff2axcodes(np.asarray(affine)))
