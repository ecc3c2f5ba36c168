"""BraTS 2020 adapter: layout variants, the Training_355 segmentation quirk, ordered 25/10/20 split, phantom layout."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import head, nifti

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest, load_slice
from medm2g_cli.errors import DataError

IDS = (1, 2, 3, 4, 5, 6, 355)


def _mini_brats(top):
    """MICCAI_BraTS2020_TrainingData inside ``top``: 003 lacks flair, 005 uses .nii, 355's seg is W39_1998.09.19_Segm.nii."""
    root = top / "MICCAI_BraTS2020_TrainingData"
    for i in IDS:
        s = f"BraTS20_Training_{i:03d}"
        ext = ".nii" if i == 5 else ".nii.gz"
        base = head(seed=i)
        for k, c in enumerate(("t1", "t1ce", "t2", "flair")):
            if i == 3 and c == "flair":
                continue
            nifti(root / s / f"{s}_{c}{ext}", np.where(base > 5, base * (1 + 0.2 * k), 0).astype(np.int16))
        seg = np.zeros(base.shape, np.uint8)
        seg[8:12, 9:13, 6:8] = 2  # a small "tumour" on slices 6-7
        name = "W39_1998.09.19_Segm.nii" if i == 355 else f"{s}_seg{ext}"
        nifti(root / s / name, seg)
    with open(root / "name_mapping.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
                    "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"])
        for i in IDS:
            w.writerow(["LGG" if i == 2 else "HGG", "NA", "NA", "NA", "NA", f"BraTS20_Training_{i:03d}"])
    return top


def test_miniature_split_quirks_and_pairing(tmp_path):
    src = _mini_brats(tmp_path / "dl")  # the folder *holding* MICCAI_BraTS2020_TrainingData
    out = tmp_path / "out"
    res = run_prepare(get_adapter("brats2020"), src, out, PrepareOptions(size=16, slices=2))
    info, samples = load_manifest(out)
    assert res.skipped == ["BraTS20_Training_003: missing BraTS20_Training_003_flair.nii[.gz]"]
    # 6 complete subjects: 25/10/20 scaled to 3/1/2, in ID order
    assert info["splits"] == {"train": 3, "val": 1, "test": 2} and info["split_scaled"] is True
    by = {s["subject"]: s for s in samples}
    assert [by[k]["split"] for k in sorted(by)] == ["train"] * 3 + ["val"] + ["test"] * 2
    assert info["subjects_used"] == sorted(by)
    s355 = [s for s in samples if s["subject"] == "BraTS20_Training_355"]
    assert {s["meta"]["segmentation"] for s in s355} == {"W39_1998.09.19_Segm.nii"}
    assert all(s["meta"]["tumour_voxels"] == 16 for s in s355)  # slices 6-7 hold the 4x4 "tumour"
    assert by["BraTS20_Training_002"]["meta"]["grade"] == "LGG"
    for s in samples:
        assert sorted(s["files"]) == ["flair", "t1", "t1ce", "t2"]
        assert s["meta"]["slice"] in (6, 7)  # the widest slices of the head
        t1, fl = load_slice(out, s["files"]["t1"]), load_slice(out, s["files"]["flair"])
        assert np.array_equal(t1 > -0.99, fl > -0.99)  # same slice, same brain outline


def test_validation_folder_and_wrong_folder(tmp_path):
    v = tmp_path / "MICCAI_BraTS2020_ValidationData" / "BraTS20_Validation_001"
    v.mkdir(parents=True)
    with pytest.raises(DataError, match="validation data"):
        run_prepare(get_adapter("brats2020"), v.parent, tmp_path / "o", PrepareOptions())
    other = tmp_path / "other"
    (other / "patient001").mkdir(parents=True)
    (other / "notes.txt").write_text("x")
    with pytest.raises(DataError) as e:
        run_prepare(get_adapter("brats2020"), other, tmp_path / "o2", PrepareOptions())
    line = e.value.one_line()
    assert "expected MICCAI_BraTS2020_TrainingData/" in line and "found notes.txt, patient001/" in line


def test_phantom_brats_layout_goes_through(phantom_brats, tmp_path):
    out = tmp_path / "prep"
    res = run_prepare(get_adapter("brats2020"), phantom_brats, out, PrepareOptions(size=32, slices=5))
    info, samples = load_manifest(out)
    assert res.failed == [] and info["splits"] == {"train": 1, "val": 0, "test": 0}
    assert len(samples) == 5 and samples[0]["subject"] == "BraTS20_Training_001"
    assert any(s["meta"]["tumour_voxels"] > 0 for s in samples)  # phantom BraTS subjects always carry a tumour
