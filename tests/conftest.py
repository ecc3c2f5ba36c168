"""Shared fixtures: real test files shipped by pydicom, nibabel and nilearn (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pydicom_file():
    """Path of a file bundled with pydicom (asserting it exists: get_testdata_file returns None otherwise)."""
    from pydicom.data import get_testdata_file

    def get(name: str) -> Path:
        path = get_testdata_file(name)
        assert path is not None, f"pydicom test file {name} is missing"
        return Path(path)

    return get


@pytest.fixture(scope="session")
def ct5n_dir(pydicom_file) -> Path:
    """pydicom's 5-slice contiguous CT series (16x16, 2.5 mm steps)."""
    path = pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "98892001" / "CT5N"
    assert path.is_dir()
    return path


@pytest.fixture(scope="session")
def nib_data() -> Path:
    """nibabel's bundled test data folder (anatomical.nii, example4d.nii.gz ...)."""
    import nibabel

    path = Path(os.path.dirname(nibabel.__file__)) / "tests" / "data"
    assert (path / "anatomical.nii").is_file()
    return path


@pytest.fixture(scope="session")
def mni_t1() -> Path:
    """nilearn's MNI152 2009a T1 template (read with nibabel; nilearn itself is not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("nilearn")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def dciodvfy():
    """Run dicom3tools' ``dciodvfy`` (the reference IOD validator) on a DICOM file; returns
    (errors, warnings) as lists of lines. The SyntheticData (0008,001C) line is left out of the
    errors: dciodvfy's dictionary predates that attribute. Without dciodvfy the test skips at the
    first check, after its other assertions ran (CI installs the Debian package dicom3tools in .ci/run)."""
    import shutil
    import subprocess

    exe = shutil.which("dciodvfy")

    def check(path: Path) -> tuple[list[str], list[str]]:
        if exe is None:
            pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60, check=False)
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if ln.startswith("Error") and "(0x0008,0x001c)" not in ln]
        warnings = [ln for ln in lines if ln.startswith("Warning")]
        return errors, warnings

    return check


@pytest.fixture(scope="module")
def model():
    """A tiny random-weight MedM2G with every branch (one per test module; modules may define their own)."""
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    return MedM2G.from_preset("tiny", seed=0).eval()


@pytest.fixture(scope="module")
def images():
    """Two seeded 32 px images in [-1, 1] (the tiny preset's size)."""
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
