"""The one table of volume suffixes: every suffix it lists is read, written and recognised by every
part that takes volume files (readers, batch listing, output naming, run reports, evaluation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.io import infer_format, read_volume, write_volume
from medm2g_cli.io.formats import DETACHED_HEADER_SUFFIXES, SUFFIX_FORMATS, VOLUME_FORMATS, VOLUME_SUFFIXES
from medm2g_cli.io.volume import Volume


def _volume() -> Volume:
    arr = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7) - 100
    aff = np.diag([1.5, 2.0, 2.5, 1.0])
    aff[:3, 3] = (-3.0, 4.0, 5.0)
    return Volume(arr, aff, "ct")


def test_table_is_consistent() -> None:
    assert set(VOLUME_SUFFIXES) == set(VOLUME_FORMATS)
    assert all(s == s.lower() and s.startswith(".") for s in SUFFIX_FORMATS)
    # longer suffixes first, so an endswith() scan never takes ".nii" out of ".nii.gz"
    for i, a in enumerate(VOLUME_SUFFIXES):
        assert not any(a.endswith(b) for b in VOLUME_SUFFIXES[:i])


@pytest.mark.parametrize("suffix", VOLUME_SUFFIXES)
def test_every_volume_suffix_round_trips_and_is_recognised(tmp_path: Path, suffix: str) -> None:
    from medm2g_cli.api import output_format
    from medm2g_cli.inference.batch import list_cases as batch_cases
    from medm2g_cli.inference.provenance import split_name
    from medm2g_cli.metrics.protocols import list_cases as eval_cases
    from medm2g_cli.metrics.protocols import read_slices

    vol = _volume()
    path = tmp_path / f"case{suffix}"
    assert infer_format(path) == VOLUME_FORMATS[suffix]
    write_volume(vol, path)
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    assert split_name(path) == ("case", suffix)
    assert output_format(path, None) == VOLUME_FORMATS[suffix]
    assert batch_cases(tmp_path) == [path]
    assert eval_cases(tmp_path) == {"case": path}
    assert read_slices(path).shape[0] == vol.shape[2]  # axial slices first


@pytest.mark.parametrize("suffix", DETACHED_HEADER_SUFFIXES)
def test_detached_header_names_its_final_data_file(tmp_path: Path, suffix: str) -> None:
    path = write_volume(_volume(), tmp_path / f"a{suffix}")
    others = sorted(p.name for p in tmp_path.iterdir() if p != path)
    assert len(others) == 1 and not others[0].startswith(".")  # no temporary name left behind
    assert others[0] in path.read_text(errors="replace")
