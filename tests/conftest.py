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
