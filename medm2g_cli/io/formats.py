"""File suffixes and the formats they name: the one table readers, writers, batch listing, run
reports and evaluation all use (so a suffix one part accepts is never unknown to another)."""

from __future__ import annotations

from pathlib import Path

VOLUME_FORMATS: dict[str, str] = {
    ".nii.gz": "nifti", ".nii": "nifti",  # .nii.gz first: suffixes are matched in this order
    ".mha": "mha", ".mhd": "mha",  # MetaImage, one file or header + .raw/.zraw
    ".nrrd": "nrrd", ".nhdr": "nrrd",  # NRRD, one file or header + data file
}
"""Volume file suffix -> format (as :func:`medm2g_cli.io.write_volume` names it)."""

VOLUME_SUFFIXES: tuple[str, ...] = tuple(VOLUME_FORMATS)
"""Suffixes of single-file volumes (lower case), double suffixes before their last part."""

DETACHED_HEADER_SUFFIXES: tuple[str, ...] = (".mhd", ".nhdr")
"""Header files whose pixels are in a separate data file next to them (written as a pair)."""

PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""2-D pictures (read as one-slice volumes, or as a folder of slices)."""

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".zip")
"""A single DICOM file, or a zip holding a DICOM series."""

SUFFIX_FORMATS: dict[str, str] = {**VOLUME_FORMATS, **dict.fromkeys(PICTURE_SUFFIXES, "png"),
                                  **dict.fromkeys(DICOM_SUFFIXES, "dicom")}
"""Every suffix :func:`medm2g_cli.io.read_volume` reads -> its format."""

OUTPUT_SUFFIX: dict[str, str] = {"nifti": ".nii.gz", "dicom": "", "mha": ".mha", "nrrd": ".nrrd"}
"""Suffix given to a generated output of each format ('' = a DICOM series folder)."""


def suffix_of(path: str | Path) -> str:
    """The lower-case suffix of ``path`` with ``.nii.gz`` kept whole ('' when there is none)."""
    p = Path(path)
    return ".nii.gz" if p.name.lower().endswith(".nii.gz") else p.suffix.lower()
