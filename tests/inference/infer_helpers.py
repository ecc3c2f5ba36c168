"""Builders of test inputs for the inference tests (real files that packages ship, made oblique/multi-slice)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    """sha256 of a file or of every file in a folder (sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def oblique_nifti(path: Path, crop: int = 12) -> tuple[Path, np.ndarray]:
    """nibabel's anatomical.nii (LAS, big-endian int16) cropped to ``crop`` slices, axes permuted
    and given an oblique (rotated, sheared-free) affine; sform and qform both set."""
    import nibabel as nib

    src = nib.load(os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii"))
    data = np.asarray(src.dataobj)[:, :, :crop]
    data = np.transpose(data, (2, 0, 1))  # slice axis first: clearly not RAS
    a, b = np.deg2rad(17), np.deg2rad(-9)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    base = np.array([[0.0, -2.0, 0.0], [0.0, 0.0, 2.5], [-3.0, 0.0, 0.0]])  # PSL-like axes, anisotropic
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ base
    aff[:3, 3] = [12.5, -30.25, 41.0]
    img = nib.Nifti1Image(data.astype(np.int16), aff)
    img.set_sform(aff, code=1)
    img.set_qform(aff, code=1)
    nib.save(img, str(path))
    return path, aff


def dicom_series(folder: Path, name: str = "MR_small.dcm", n: int = 5, spacing: float = 2.0) -> Path:
    """``n`` copies of a pydicom test file as one series with shifted ImagePositionPatient, new SOP
    UIDs, and shuffled file names (the reader must sort by position)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    src = get_testdata_file(name)
    assert src is not None, f"pydicom test file {name} is missing"
    folder.mkdir(parents=True)
    series = generate_uid()
    order = [3, 0, 4, 1, 2, 5, 6, 7][:n] if n <= 8 else list(range(n))
    for i in range(n):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + spacing * i]
        ds.InstanceNumber = i + 1
        ds.SliceThickness = spacing
        # A little variation between slices so the series is not constant along z.
        arr = ds.pixel_array.astype(np.int32)
        ds.PixelData = np.clip(arr + 7 * i, 0, np.iinfo(arr.dtype).max if arr.dtype.kind == "u" else 32767).astype(
            ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"img_{order[i]:03d}.dcm")
    return folder
