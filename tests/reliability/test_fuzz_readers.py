"""Property-based fuzzing of the NIfTI, DICOM and manifest readers: small valid files with random
byte flips, insertions and truncations. Whatever the bytes, the reader returns a volume (or records)
or raises a :class:`MedM2GError` — no other exception type may escape."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import mri_volume, nifti, pydicom_testfile

from medm2g_cli.errors import MedM2GError

FUZZ = settings(max_examples=int(os.environ.get("MEDM2G_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mutations(size: int, hot: int) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Edits of a ``size``-byte file, most of them in its first ``hot`` bytes (the header)."""
    pos = st.one_of(st.integers(0, max(hot - 1, 0)), st.integers(0, size - 1))
    edit = st.tuples(st.sampled_from(["set", "set", "set", "insert", "delete"]), pos, st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=12)


def _apply(data: bytes, edits: list[tuple[str, int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for kind, pos, val in edits:
        pos = min(pos, max(len(b) - 1, 0))
        if kind == "set" and b:
            b[pos] = val
        elif kind == "insert":
            b[pos:pos] = bytes([val])
        elif kind == "delete" and b:
            del b[pos]
    return bytes(b[:cut] if cut is not None else b)


def _only_our_errors(fn, *args, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readers may warn about odd headers; only exceptions matter here
        try:
            fn(*args, **kwargs)
        except MedM2GError:
            pass


@pytest.fixture(scope="module")
def nifti_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fuzz_nii")
    vol = mri_volume(shape=(8, 8, 3))
    return {suf: nifti(d / f"v{suf}", vol.astype(np.int16)).read_bytes() for suf in (".nii", ".nii.gz")}


@FUZZ
@given(data=st.data())
def test_fuzz_nifti_reader(nifti_bytes: dict[str, bytes], data: st.DataObject) -> None:
    from medm2g_cli.io import read_volume

    suf = data.draw(st.sampled_from([".nii", ".nii", ".nii.gz"]))
    base = nifti_bytes[suf]
    edits = data.draw(_mutations(len(base), 352 if suf == ".nii" else 64))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(base))))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"fuzz{suf}"
        p.write_bytes(_apply(base, edits, cut))
        _only_our_errors(read_volume, p)


@pytest.fixture(scope="module")
def dicom_bytes() -> bytes:
    return pydicom_testfile("MR_small.dcm").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_dicom_reader(dicom_bytes: bytes, data: st.DataObject) -> None:
    from medm2g_cli.io import read_volume

    edits = data.draw(_mutations(len(dicom_bytes), 1200))  # MR_small's header ends near byte 1100
    cut = data.draw(st.one_of(st.none(), st.none(), st.integers(0, len(dicom_bytes))))
    two = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        (folder / "a.dcm").write_bytes(_apply(dicom_bytes, edits, cut))
        if two:  # a valid neighbour: the damaged file must not break the series silently either way
            (folder / "b.dcm").write_bytes(dicom_bytes)
        _only_our_errors(read_volume, folder)
        _only_our_errors(read_volume, folder / "a.dcm")


_INFO = {"format": 1, "name": "phantom", "modalities": ["mri"], "keys": ["t1", "t2"], "flows": ["t1-t2"]}
_RECS = [{"id": f"s{i}", "subject": f"p{i // 2}", "split": "train", "files": {"t1": f"slices/{i}_t1.png",
          "t2": f"slices/{i}_t2.png"}, "text": None} for i in range(3)]

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
                       st.sampled_from(["..", "../x", "/etc/passwd", "slices/0_t1.png", "C:\\x", "a/../../b"]))
_json = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), c, max_size=3)),
                     max_leaves=8)


@FUZZ
@given(data=st.data())
def test_fuzz_manifest_reader(data: st.DataObject) -> None:
    from medm2g_cli.data.manifest import load_manifest

    info = json.dumps(_INFO).encode()
    samples = "".join(json.dumps(r) + "\n" for r in _RECS)
    how = data.draw(st.sampled_from(["bytes", "values"]))
    if how == "values":  # structurally valid JSON with hostile values in the records
        recs = [dict(r) for r in _RECS]
        i = data.draw(st.integers(0, len(recs) - 1))
        key = data.draw(st.sampled_from(["id", "subject", "split", "files", "text", "extra"]))
        recs[i][key] = data.draw(_json)
        if data.draw(st.booleans()):
            recs[i]["files"] = data.draw(st.dictionaries(st.text(max_size=4), _json, max_size=2))
        samples = "".join(json.dumps(r) + "\n" for r in recs)
        sb = samples.encode()
    else:
        sb = samples.encode()
        sb = _apply(sb, data.draw(_mutations(len(sb), len(sb))), data.draw(st.one_of(st.none(), st.integers(0, len(sb)))))
        if data.draw(st.booleans()):
            info = _apply(info, data.draw(_mutations(len(info), len(info))), None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "prepared"
        (root / "slices").mkdir(parents=True)
        (root / "dataset.json").write_bytes(info)
        (root / "samples.jsonl").write_bytes(sb)
        _only_our_errors(load_manifest, root)
