"""Miniature copies of the public datasets' layouts (with their quirks) and phantom cohorts.

Volumes are tiny synthetic heads (an ellipsoid whose axial extent is known, so slice selection can be
checked); phantom cohorts are session-scoped because generating them costs seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def nifti(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``arr`` as NIfTI (``.nii`` or ``.nii.gz`` by the name)."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr), np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def head(shape=(20, 22, 14), z_range=(3, 11), value=800.0, seed=0, peak_z=7) -> np.ndarray:
    """A synthetic head: an ellipsoid spanning axial slices ``z_range`` (widest at ``peak_z``) plus noise."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    cx, cy = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    lo, hi = z_range
    half = max(peak_z - lo, hi - 1 - peak_z) + 0.5
    r = ((x - cx) / (shape[0] * 0.4)) ** 2 + ((y - cy) / (shape[1] * 0.4)) ** 2 + ((z - peak_z) / half) ** 2
    inside = (r <= 1.0) & (z >= lo) & (z < hi)
    arr = np.where(inside, value * (1.2 - 0.5 * r), 0.0) + rng.uniform(0, 3, shape)
    return arr.astype(np.float32)


def png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    """Write a picture; ``mode`` (e.g. RGB, I;16) converts it first, as some downloads ship it."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr)
    if mode == "I;16":
        Image.fromarray(a.astype(np.uint16)).save(path)
    else:
        im = Image.fromarray(a.astype(np.uint8))
        (im.convert(mode) if mode else im).save(path)
    return path


def radiograph(seed: int, size: int = 48) -> np.ndarray:
    """A random but structured 8-bit picture (a bright disc on a gradient)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
    disc = ((x - cx) ** 2 + (y - cy) ** 2) < (size * 0.2) ** 2
    return (x * 100 / size + disc * 120 + rng.uniform(0, 20, (size, size))).astype(np.uint8)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def phantom_ixi(tmp_path_factory) -> Path:
    """The phantom's own IXI layout (1 subject, 2 mm: generating one costs seconds)."""
    from medm2g_cli.data.phantom import write_brain_cohort

    out = tmp_path_factory.mktemp("ph") / "IXI"
    write_brain_cohort(out, 1, seed=3, resolution=2, layout="ixi")
    return out


@pytest.fixture(scope="session")
def phantom_brats(tmp_path_factory) -> Path:
    """The phantom's own BraTS layout (1 subject, 2 mm)."""
    from medm2g_cli.data.phantom import write_brain_cohort

    out = tmp_path_factory.mktemp("ph") / "MICCAI_BraTS2020_TrainingData"
    write_brain_cohort(out, 1, seed=4, resolution=2, layout="brats")
    return out


@pytest.fixture(scope="session")
def phantom_iu(tmp_path_factory) -> Path:
    """The phantom's own IU X-ray (R2Gen) layout: 6 two-view studies of 256 px (its smallest size)."""
    from medm2g_cli.data.phantom import write_chest_cohort

    out = tmp_path_factory.mktemp("ph") / "iu_xray"
    write_chest_cohort(out, 6, seed=5, size=256, layout="iu-xray")
    return out
