"""Refuse an input whose modality contradicts the translation direction, before any model work.

A CT given to mri2ct is caught from its DICOM Modality tag or, for files without one, from its
intensities (many voxels below -500 can only be Hounsfield units); NaN/Inf voxels are refused too.
"""

from __future__ import annotations

import numpy as np

from .. import modalities
from ..errors import InputError, ModalityError
from ..io.volume import Volume

# Share of voxels below -500 above which a volume is taken to be a CT in HU (air, lungs and the
# table are < -500 HU in every CT; MRI magnitudes are never negative).
CT_AIR_FRACTION = 0.05


def check_modality(vol: Volume, expected: str, label: str = "input") -> None:
    """Refuse a volume whose DICOM Modality tag or intensities contradict ``expected``.

    A CT given to mri2ct is caught from the tag (0008,0060) or, for NIfTI, from the intensity range
    (many voxels below -500 can only be HU). Raises :class:`ModalityError` before any model work.
    """
    if np.asarray(vol.array).ndim != 3 or vol.meta.get("format") == "picture":
        raise InputError(f"{label} has shape {vol.shape}; translation needs a 3-D volume",
                         "pass a volume (NIfTI, DICOM series, MHA/NRRD), not a 2-D image")
    mod = modalities.split_target(expected)[0]
    tag = vol.meta.get("Modality") or vol.meta.get("modality_tag") or (vol.meta.get("dicom") or {}).get("Modality")
    tagged = modalities.from_dicom(tag) if isinstance(tag, str) else None
    declared = tagged or (vol.modality if vol.modality in modalities.MODALITIES else None)
    if declared is not None and declared != mod:
        src = f"its DICOM Modality is {tag}" if tagged else f"it is marked as {declared}"
        raise ModalityError(f"{label} is {declared.upper()} ({src}) but this direction needs {mod.upper()}",
                            "choose the matching direction (see `medm2g translate --help`) or the right file")
    n_finite, n_air, vmin = _air_stats(np.asarray(vol.array))
    if n_finite == 0:
        raise InputError(f"{label} has no finite voxel values", "check the file")
    if n_finite != np.asarray(vol.array).size:
        # NaN/Inf would spread through the normalisation and the model into the whole output.
        raise InputError(f"{label} has {np.asarray(vol.array).size - n_finite} NaN/Inf voxel(s)",
                         "replace them (e.g. with 0 or the background value) before translating")
    air = n_air / n_finite
    if mod == "mri" and air > CT_AIR_FRACTION:
        raise ModalityError(
            f"{label} looks like a CT ({air:.0%} of voxels are below -500, which only Hounsfield units reach) "
            "but this direction needs an MRI",
            "use a CT direction such as ct2mri, or pass the MRI file",
        )
    if mod == "ct" and tagged is None and vmin >= 0:
        raise ModalityError(f"{label} has no negative values, so it is not a CT in Hounsfield units",
                            "use an MRI direction such as mri2ct, or convert the CT to HU")


def _air_stats(arr: np.ndarray, chunk: int = 16) -> tuple[int, int, float]:
    """(finite voxels, voxels below -500, minimum finite value), computed slab by slab along the
    first axis so no full-volume temporary is made (memory stays bounded for big volumes)."""
    n_finite, n_air, vmin = 0, 0, float("inf")
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    for i in range(0, flat.shape[0], chunk):
        slab = flat[i:i + chunk]
        if slab.dtype.kind == "f":
            slab = slab[np.isfinite(slab)]
        if slab.size:
            n_finite += int(slab.size)
            n_air += int(np.count_nonzero(slab < -500))
            vmin = min(vmin, float(slab.min()))
    return n_finite, n_air, vmin
