"""Builders of small valid and broken inputs for the reliability tests (real files that packages ship)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def tree_hash(path: Path) -> str:
    """sha256 over every file (and link target) under ``path`` with its relative name; a file hashes itself."""
    h = hashlib.sha256()
    if path.is_symlink():
        h.update(b"link:" + os.readlink(path).encode())
        return h.hexdigest()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for p in sorted(path.rglob("*")):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        if p.is_symlink():
            h.update(b"link:" + os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def listing(path: Path) -> list[str]:
    """Every entry under ``path`` (hidden ones included), relative and sorted."""
    if not path.exists():
        return []
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI with both sform and qform set."""
    import nibabel as nib

    aff = np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(np.asarray(data), aff)
    img.set_sform(aff, code=1)
    img.set_qform(aff, code=1)
    nib.save(img, str(path))
    return path


def mri_volume(seed: int = 0, shape: tuple[int, int, int] = (16, 16, 4)) -> np.ndarray:
    """A smooth positive MRI-like volume (no negative values, so it is not mistaken for CT)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = np.exp(-(x**2 + y**2) * 3) * 800 + 100 * z
    return (np.abs(blob + rng.normal(0, 20, shape)) + 50).astype(np.float32)


def header_only_nifti(path: Path, dims: tuple[int, ...], payload: int = 256) -> Path:
    """A NIfTI header claiming ``dims`` float32 voxels followed by only ``payload`` bytes (gzipped for .gz)."""
    import gzip

    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    d = np.ones(8, dtype=np.int16)
    d[0] = len(dims)
    d[1 : len(dims) + 1] = dims
    hdr["dim"] = d
    hdr["pixdim"] = [1, 1, 1, 1, 1, 1, 1, 1]
    hdr["vox_offset"] = 352
    hdr.set_sform(np.eye(4), code=1)
    blob = hdr.binaryblock + b"\0" * 4 + bytes(payload)
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def pydicom_testfile(name: str) -> Path:
    """A file bundled with pydicom (asserted present: no downloads)."""
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name)
    assert p is not None, f"pydicom test file {name} is missing"
    return Path(p)


def dicom_series(folder: Path, name: str = "CT_small.dcm", positions: list[list[float]] | None = None,
                 n: int = 3, spacing: float = 5.0, series_uid: str | None = None,
                 edit: Any = None) -> Path:
    """Copies of a pydicom test file as one series at ``positions`` (default: ``n`` slices ``spacing`` apart);
    ``edit(ds, i)`` may change each dataset before it is saved."""
    import pydicom
    from pydicom.uid import generate_uid

    src = pydicom_testfile(name)
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    base = [float(v) for v in pydicom.dcmread(src).ImagePositionPatient]
    if positions is None:
        positions = [[base[0], base[1], base[2] + spacing * i] for i in range(n)]
    for i, pos in enumerate(positions):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.InstanceNumber = i + 1
        if edit is not None:
            edit(ds, i)
        ds.save_as(folder / f"{uid[-6:]}_{i:03d}.dcm")
    return folder
