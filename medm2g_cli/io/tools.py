"""Typed operations behind ``medm2g info``, ``convert`` and ``register`` (no typer, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DicomSeriesError, FormatError, InputError
from . import infer_format, read_volume, write_volume
from .atomic import atomic_path, check_output
from .volume import Volume


def describe(vol: Volume) -> dict[str, Any]:
    """Summary of a volume: shape, spacing, affine, orientation, dtype, value range, modality."""
    a = np.asarray(vol.array)
    finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
    return {
        "shape": list(vol.shape),
        "spacing": [round(s, 6) for s in vol.spacing],
        "affine": [[float(v) for v in row] for row in vol.affine],
        "orientation": vol.orientation,
        "dtype": str(a.dtype),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "modality": vol.modality,
        "format": vol.meta.get("format"),
        "notes": list(vol.meta.get("notes", [])),
    }


def volume_info(path: str | Path, *, modality: str | None = None, series: str | None = None,
                volume_index: int | None = None, allow_irregular: bool = False) -> dict[str, Any]:
    """What ``medm2g info`` shows. A DICOM folder with several series and no ``series`` lists them
    (``n_series``, ``series``) instead of failing; geometry keys are then null."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input '{path}' does not exist", "check the path")
    info: dict[str, Any] = {"path": str(path)}
    fmt = infer_format(path)
    listing = None
    if fmt == "dicom" and (path.is_dir() or path.suffix.lower() == ".zip"):
        from .dicom import list_dicom_series

        listing = list_dicom_series(path)
        info["n_series"] = len(listing)
        info["series"] = listing
        if len(listing) > 1 and series is None:
            info.update({k: None for k in ("shape", "spacing", "affine", "orientation", "dtype", "min", "max", "modality")})
            info["notes"] = ["several series: pick one with --series UID to describe it"]
            return info
        if not listing:
            raise DicomSeriesError(f"no DICOM images found in '{path}'",
                                   "pass a folder (or .zip) holding a DICOM series, or a .dcm file")
    vol = read_volume(path, modality=modality, series=series, volume_index=volume_index,
                      allow_irregular=allow_irregular)
    info.update(describe(vol))
    if vol.meta.get("format") == "dicom":
        info["n_series"] = info.get("n_series", 1)
        info["series_uid"] = vol.meta.get("SeriesInstanceUID")
        info["series_description"] = vol.meta.get("SeriesDescription")
        info["dicom_modality"] = vol.meta.get("dicom_modality")
    if "n_volumes" in vol.meta:
        info["n_volumes"] = vol.meta["n_volumes"]
        info["volume_index"] = vol.meta["volume_index"]
    return info


def _is_picture_folder(path: Path) -> bool:
    return path.is_dir() and infer_format(path) == "png"


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    format: str | None = None,  # noqa: A002 - mirrors --format
    modality: str | None = None,
    window: str | None = None,
    axis: str = "axial",
    reference: str | Path | None = None,
    series: str | None = None,
    volume_index: int | None = None,
    bits: int = 16,
    allow_irregular: bool = False,
    overwrite: bool = False,
    anonymize: bool = False,
) -> dict[str, Any]:
    """Convert ``src`` to ``dst`` (format from ``format`` or the suffix); returns a summary dict.

    The output is checked before anything is read, written atomically, and a DICOM input's study and
    patient module go into a DICOM output (as a new derived series).
    """
    from .png import resolve_window

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise InputError(f"input '{src}' does not exist", "check the path")
    fmt = (format or infer_format(dst) or "").lower() or None
    if fmt is None:
        raise FormatError(f"cannot tell the output format of '{dst.name}'",
                          "add a suffix (.nii.gz, .mha, .nrrd, .png) or pass --format nifti|dicom|mha|nrrd|png")
    check_output(dst, overwrite, inputs=[src, *([reference] if reference is not None else [])])
    if bits not in (8, 16):
        raise InputError(f"--bits {bits} is not supported", "use 8 or 16")
    ref_vol = read_volume(reference, modality=modality) if reference is not None else None
    if _is_picture_folder(src) and ref_vol is None:
        raise InputError(f"'{src.name}' is a folder of pictures with no geometry",
                         "pass --reference VOLUME (the volume the slices came from) to give it a grid")
    vol = read_volume(src, modality=modality, series=series, volume_index=volume_index, reference=ref_vol,
                      allow_irregular=allow_irregular, axis=axis if _is_picture_folder(src) else None)
    win = None
    if fmt == "png":
        win = resolve_window(window, vol.array, vol.modality) if window is not None or vol.modality == "ct" \
            else resolve_window("auto", vol.array, vol.modality)
    source_meta = dict(vol.meta) if vol.meta.get("format") == "dicom" else None
    write_ref = ref_vol if (ref_vol is not None and not _is_picture_folder(src)) else None
    # Provenance is the software and the operation, never the input's name (often SURNAME_MRN.nii.gz).
    write_volume(vol, dst, format=fmt, overwrite=overwrite, reference=write_ref, source_meta=source_meta,
                 description=f"converted by medm2g {__version__}", window=win, bits=bits, axis=axis,
                 anonymize=anonymize)
    out = describe(vol)
    out.update({"input": str(src), "output": str(dst), "input_format": out.pop("format"), "format": fmt})
    if win is not None:
        out["window"] = [win[0], win[1]]
        out["bits"] = bits
        out["axis"] = axis
    return out


def register_files(
    fixed: str | Path,
    moving: str | Path,
    output: str | Path,
    *,
    transform: str = "rigid",
    save_transform: str | Path | None = None,
    fixed_series: str | None = None,
    moving_series: str | None = None,
    iterations: int = 200,
    overwrite: bool = False,
    anonymize: bool = False,
) -> dict[str, Any]:
    """Register MOVING to FIXED, write the resampled moving image on the fixed grid (and the transform).

    ``anonymize`` de-identifies a DICOM output (PS3.15 Basic Profile, clean descriptors)."""
    import SimpleITK as sitk  # noqa: N813

    from .registration import TRANSFORMS, register

    output = Path(output)
    fmt = infer_format(output)
    if fmt is None or fmt == "png":
        raise FormatError(f"cannot tell a volume format from '{output.name}'",
                          "give -o a .nii.gz, .mha or .nrrd name (or a folder with --format dicom via convert)")
    if transform not in TRANSFORMS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown transform '{transform}'", f"use one of: {', '.join(TRANSFORMS)}")
    check_output(output, overwrite, inputs=[fixed, moving])
    if save_transform is not None:
        check_output(save_transform, overwrite, inputs=[fixed, moving])
        if Path(save_transform).suffix.lower() not in (".tfm", ".txt", ".h5", ".hdf5", ".mat"):
            raise FormatError(f"cannot write a transform to '{Path(save_transform).name}'",
                              "use a .tfm, .txt, .h5 or .mat name for --save-transform")
    f = read_volume(fixed, series=fixed_series)
    m = read_volume(moving, series=moving_series)
    res = register(f, m, transform, iterations=iterations)
    # Transform first (small), then the image; each is atomic on its own.
    if save_transform is not None:
        with atomic_path(save_transform, overwrite=overwrite) as tmp:
            sitk.WriteTransform(res.transform, str(tmp))
    write_volume(res.resampled, output, overwrite=overwrite, reference=f,
                 source_meta=dict(f.meta) if f.meta.get("format") == "dicom" else None,
                 description=f"registered ({transform}, Mattes MI) by medm2g {__version__}", anonymize=anonymize)
    return {"fixed": str(fixed), "moving": str(moving), "output": str(output), "transform": transform,
            "metric": res.metric, "metric_name": "Mattes mutual information", "iterations": res.iterations,
            "stop_condition": res.stop_condition,
            "save_transform": str(save_transform) if save_transform is not None else None,
            "shape": list(res.resampled.shape)}
