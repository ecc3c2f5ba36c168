"""Medical image I/O that never loses geometry (numpy + nibabel/pydicom/SimpleITK/Pillow; no torch).

Public entry points:

- :func:`read_volume` — NIfTI, DICOM (folder, zip, single file), MetaImage, NRRD, PNG/JPEG, PNG folders.
- :func:`write_volume` — the same formats; always atomic, never over an existing output without
  ``overwrite``.
- :func:`infer_format`, :func:`list_dicom_series`.
- :mod:`.registration` — ``register()`` and ``resample_to()``; :mod:`.orientation` — ``to_canonical()``.

Every reader returns a :class:`Volume` whose affine maps voxel indices to RAS+ millimetres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError, IdentityWarning, InputError
from .atomic import check_output
from .formats import PICTURE_SUFFIXES, SUFFIX_FORMATS, suffix_of
from .orientation import AXES, to_canonical
from .volume import Volume

__all__ = [
    "AXES",
    "FORMATS",
    "Volume",
    "infer_format",
    "list_dicom_series",
    "read_volume",
    "to_canonical",
    "write_volume",
]

FORMATS: tuple[str, ...] = ("nifti", "dicom", "mha", "nrrd", "png")
"""Formats ``write_volume`` accepts (``mha`` covers .mha and .mhd)."""

def infer_format(path: str | Path) -> str | None:
    """Format name from a path: by suffix, or ``dicom``/``png`` for an existing folder of those.

    Returns None when nothing can be inferred (e.g. a new folder name: the caller decides).
    """
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(suffix_of(path))
    if fmt:
        return fmt
    if path.is_dir():
        entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if entries and all(p.suffix.lower() in (*PICTURE_SUFFIXES, ".json") for p in entries) and \
                any(p.suffix.lower() != ".json" for p in entries):
            return "png"
        return "dicom"
    if path.is_file() and path.suffix == "":
        # Extension-less files are common for DICOM (e.g. pydicom's CT5N series).
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                return "dicom"
        except OSError:
            return None
    return None


def read_volume(
    path: str | Path,
    *,
    modality: str | None = None,
    series: str | None = None,
    volume_index: int | None = None,
    reference: Volume | str | Path | None = None,
    allow_irregular: bool = False,
    axis: str | None = None,
) -> Volume:
    """Read any supported image into a :class:`Volume` (RAS affine, source metadata in ``meta``).

    ``modality`` overrides the detected one (ct, mri, xray); ``series`` picks a DICOM series by UID,
    UID prefix or series number; ``volume_index`` picks a volume of a 4-D NIfTI; ``reference`` gives
    a PNG slice folder its grid; ``allow_irregular`` accepts uneven DICOM slice spacing / gantry tilt.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input '{path}' does not exist", "check the path (and that the file was copied completely)")
    if modality is not None:
        from ..modalities import get

        spec = get(modality)
        modality = spec.name
    fmt = infer_format(path)
    if fmt in ("nifti", "mha", "nrrd") and path.is_dir():
        raise InputError(f"'{path.name}' is a folder, not a {fmt.upper()} file", "pass the file itself")
    if fmt == "nifti":
        from .nifti import read_nifti

        return read_nifti(path, modality=modality, volume_index=volume_index)
    if fmt in ("mha", "nrrd"):
        from .itk import read_itk

        return read_itk(path, modality=modality)
    if fmt == "png" and path.is_file():
        from .png import read_picture

        return read_picture(path, modality=modality)
    if fmt == "png":
        from .png import read_png_folder

        ref = read_volume(reference) if isinstance(reference, str | Path) else reference
        return read_png_folder(path, reference=ref, modality=modality, axis=axis)
    if fmt == "dicom":
        from .dicom import read_dicom

        return read_dicom(path, modality=modality, series=series, allow_irregular=allow_irregular)
    raise FormatError(
        f"cannot read '{path.name}': unknown format '{suffix_of(path) or '(no suffix)'}'",
        "use .nii/.nii.gz, .mha/.mhd, .nrrd, .png/.jpg, a .dcm file, a DICOM folder or a .zip of one",
    )


def list_dicom_series(folder: str | Path) -> list[dict[str, Any]]:
    """The series in a DICOM folder or zip: dicts with uid, description, number, modality, n_slices."""
    from .dicom import list_dicom_series as _list

    return _list(folder)


IDENTIFIED = ("the DICOM output carries the source's PatientName/PatientID (identified data)",
              "pass --anonymize to de-identify it")


def _warn_identified(meta: dict[str, Any]) -> None:
    """Say (once per run, :class:`~medm2g_cli.errors.IdentityWarning`) that a DICOM output will
    carry the patient identity of its DICOM source."""
    if any(str(meta.get(k) or "").strip() for k in ("PatientName", "PatientID")):
        import warnings

        warnings.warn(" — ".join(IDENTIFIED), IdentityWarning, stacklevel=3)


def write_volume(
    vol: Volume,
    path: str | Path,
    *,
    format: str | None = None,  # noqa: A002 - part of the public contract
    overwrite: bool = False,
    reference: Volume | None = None,
    source_meta: dict[str, Any] | None = None,
    description: str | None = None,
    window: tuple[float, float] | None = None,
    bits: int = 16,
    axis: str = "axial",
    anonymize: bool = False,
    derivation: tuple[str, str, str] | None = None,
) -> Path:
    """Write ``vol`` to ``path`` atomically; ``format`` defaults to what the suffix says.

    ``derivation`` (DICOM only): the code of what made ``vol`` from its DICOM source (e.g.
    :data:`.dicom_write.SYNTHESIS_CODE`), written in a DerivationImageSequence.

    ``anonymize`` de-identifies DICOM outputs (PS3.15 Basic Profile); other formats carry no patient data.

    ``reference`` (a Volume) puts the output on the reference grid when shapes agree, and supplies
    source metadata (study, patient) for DICOM. ``source_meta`` overrides that metadata;
    ``description`` is the provenance (NIfTI ``descrip``, DICOM DerivationDescription). PNG output:
    one picture for a 2-D image, else a folder with one ``window``-ed slice per file along ``axis``.
    """
    path = Path(path)
    fmt = (format or infer_format(path) or "").lower()
    if fmt in ("nii", "nii.gz"):
        fmt = "nifti"
    if fmt in ("mhd", "metaimage"):
        fmt = "mha"
    if not fmt:
        raise FormatError(f"cannot tell the output format of '{path.name}'",
                          "add a suffix (.nii.gz, .mha, .nrrd, .png) or pass --format nifti|dicom|mha|nrrd|png")
    if fmt not in FORMATS:
        raise FormatError(f"unknown output format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    check_output(path, overwrite)
    meta = dict(source_meta or {})
    if reference is not None:
        meta = {**reference.meta, **meta}
        if tuple(reference.shape[:3]) == tuple(vol.shape[:3]):
            vol = Volume(vol.array, reference.affine.copy(), vol.modality or reference.modality, dict(vol.meta))
    if fmt == "nifti":
        from .nifti import write_nifti

        return write_nifti(vol, path, overwrite=overwrite, description=description, source_meta=meta)
    if fmt in ("mha", "nrrd"):
        from .itk import write_itk

        return write_itk(vol, path, overwrite=overwrite)
    if fmt == "dicom":
        from .dicom_write import write_dicom

        if not anonymize:
            _warn_identified(meta)

        return write_dicom(vol, path, overwrite=overwrite, source_meta=meta, description=description,
                           anonymize=anonymize, derivation=derivation)
    from .png import write_picture, write_png_slices

    if path.suffix.lower() in PICTURE_SUFFIXES:
        return write_picture(vol, path, window=window, bits=bits, overwrite=overwrite)
    return write_png_slices(vol, path, axis=axis, window=window, bits=bits, overwrite=overwrite)
