"""2-D images in and out of the model: chest X-rays for ``report``, generated images for ``generate``.

Generated images are written as PNG (X-ray 8-bit; CT and MRI 16-bit so HU and contrast survive)
or as DICOM Secondary Capture objects that say they are synthetic (ConversionType SYN,
SyntheticData YES, ImageType DERIVED\\SECONDARY, a "SYNTHETIC" series description), with new
UIDs and no frame of reference: a generated image has no spatial link to any patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import modalities
from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.volume import Volume


def to_png_array(img: np.ndarray, modality: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Model output [H, W] in [-1, 1] -> PNG pixels and the mapping back to physical units."""
    x = (np.clip(img, -1.0, 1.0) + 1.0) / 2.0
    mod = modalities.split_target(modality)[0]
    preset = modalities.get(mod).preset
    if mod == "xray":
        return (x * 255 + 0.5).astype(np.uint8), {"bits": 8, "model_range": [-1, 1], "pixel_range": [0, 255]}
    mapping: dict[str, Any] = {"bits": 16, "model_range": [-1, 1], "pixel_range": [0, 65535]}
    if preset is not None and preset.mode == "window":
        mapping["physical_range"] = [preset.low, preset.high]
        mapping["unit"] = preset.unit
    return (x * 65535 + 0.5).astype(np.uint16), mapping


def write_secondary_capture(img: np.ndarray, modality: str, path: Path, *, description: str, derivation: str,
                            instance: int = 1, series_uid: str | None = None, study: dict[str, Any] | None = None,
                            model_name: str = "medm2g") -> Path:
    """Write a model output [H, W] in [-1, 1] as a synthetic Secondary Capture DICOM file (highdicom).

    Images of one run share ``study`` (from :func:`medm2g_cli.io.dicom_write.case_context`) and
    ``series_uid``; without them the image opens its own study and series.
    """
    from pydicom.uid import generate_uid

    from ..io.dicom_objects import build_secondary_capture
    from ..io.dicom_write import case_context

    pixels, _ = to_png_array(img, modality)
    sc = build_secondary_capture(pixels, study=study or case_context(None), series_uid=series_uid or str(generate_uid()),
                                 instance=instance, description=description, derivation=derivation,
                                 model_name=model_name, orientation=("L", "F") if modality == "xray" else ("L", "P"))
    with atomic_path(path, overwrite=True) as tmp:
        sc.save_as(tmp, enforce_file_format=True)
    return path


def xray_to_model(vol: Volume, path: Path | str) -> Any:
    """A chest X-ray volume (one 2-D image) -> tensor [1, 1, H, W] in [-1, 1] (min/max preset)."""
    import torch

    arr = np.asarray(vol.array, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0].T  # (column, row) voxel order -> rows x columns, as displayed
    if arr.ndim != 2:
        raise InputError(f"'{path}' is not a 2-D image (shape {vol.shape})", "pass a single chest X-ray image")
    if str(vol.meta.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = arr.max() - arr  # MONOCHROME1 shows low values as white: invert to the usual look
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if hi <= lo:
        raise InputError(f"'{path}' is a constant image", "pass a real chest X-ray")
    x = (arr - lo) / (hi - lo) * 2.0 - 1.0
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def check_image_options(fmt: str, num: int) -> str:
    """``--format`` (png|dicom, returned lower-cased) and ``-n`` of the generate commands."""
    from ..errors import ConfigError

    fmt = fmt.lower()
    if fmt not in ("png", "dicom"):
        raise ConfigError(f"unknown image format '{fmt}'", "use png or dicom")
    if num < 1:
        raise ConfigError(f"-n {num} is not positive", "use 1 or more")
    return fmt


def write_generated(img: np.ndarray, modality: str, folder: Path, name: str, fmt: str, *, description: str,
                    derivation: str, instance: int, sc_ids: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Write one generated image [H, W] in [-1, 1] as ``name.png`` or a synthetic ``name.dcm``
    Secondary Capture in ``folder``; returns the file name and the PNG intensity mapping."""
    from ..report.preview import save_png

    data, mapping = to_png_array(img, modality)
    if fmt == "png":
        save_png(data, folder / f"{name}.png", overwrite=True)
        return f"{name}.png", mapping
    write_secondary_capture(img, modality, folder / f"{name}.dcm", description=description[:64],
                            derivation=derivation, instance=instance, **sc_ids)
    return f"{name}.dcm", mapping
