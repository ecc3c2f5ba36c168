"""MIMIC-CXR adapter: PhysioNet tree (DICOM and JPG releases), official split CSV, sections, views."""

from __future__ import annotations

import csv
import gzip
import io

import numpy as np
import pytest
from conftest import png, radiograph

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.adapters.mimic_cxr import read_cxr, report_text
from medm2g_cli.data.manifest import load_manifest, load_slice
from medm2g_cli.data.text_clean import clean_report_mimic_cxr
from medm2g_cli.errors import DataError

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 The lungs are clear.  No pleural effusion
 or pneumothorax.  Heart size is normal.

 IMPRESSION:  No acute cardiopulmonary process.
"""


def _gz_csv(path, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))


def _dicom(path, arr, mono1=False):
    from medm2g_cli.io import Volume
    from medm2g_cli.io.dicom_write import build_series

    ds = build_series(Volume(arr.T.astype(np.int16)[:, :, None], np.eye(4), "xray"))[0]
    if mono1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def _mini(root, jpg=False):
    """9 studies of 9 patients; s5..03 has no FINDINGS, one image is a lateral AP-less 'LL' view, one study has 4 images."""
    split_rows, meta_rows = [], []
    for i in range(9):
        subj, study = f"p1{i:07d}", f"s5{i:07d}"
        sdir = root / "files" / subj[:3] / subj / study
        n_img = 4 if i == 0 else 2
        for k in range(n_img):
            dicom_id = f"{i:08x}-{k:08x}-0000-0000-{k:04x}"
            img = radiograph(i * 10 + k, 32)
            if jpg:
                png(sdir / f"{dicom_id}.jpg", img)
            else:
                _dicom(sdir / f"{dicom_id}.dcm", img, mono1=(i == 1 and k == 0))
            sp = "train" if i < 6 else "validate" if i < 7 else "test"
            split_rows.append({"dicom_id": dicom_id, "study_id": study[1:], "subject_id": subj[1:], "split": sp})
            view = ["PA", "LATERAL", "AP", "PA"][k] if i != 2 else ["PA", "LL"][k]
            meta_rows.append({"dicom_id": dicom_id, "subject_id": subj[1:], "study_id": study[1:], "ViewPosition": view})
        text = REPORT if i != 3 else "FINAL REPORT\n IMPRESSION: No change.\n"
        (sdir.parent / f"{study}.txt").write_text(text)
    _gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", split_rows)
    _gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", meta_rows)
    return root


def test_sections():
    assert report_text(REPORT, "findings") == "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal."
    assert report_text(REPORT, "impression") == "No acute cardiopulmonary process."
    assert report_text("IMPRESSION: x.", "findings") == ""


@pytest.mark.parametrize("jpg", [False, True])
def test_official_split_views_and_reports(tmp_path, jpg):
    src = _mini(tmp_path / "mimic", jpg=jpg)
    res = run_prepare(get_adapter("mimic-cxr"), src, tmp_path / "o", PrepareOptions(size=16))
    info, samples = load_manifest(tmp_path / "o")
    assert info["release"] == ("jpg" if jpg else "dicom")
    assert res.skipped == ["s50000003: report has no findings section"]
    assert info["splits"] == {"train": 5, "val": 1, "test": 2}  # studies; validate -> val
    by_study = {}
    for s in samples:
        by_study.setdefault(s["meta"]["study"], []).append(s)
        assert s["text"].startswith("The lungs are clear.")
        assert s["meta"]["report_clean"] == clean_report_mimic_cxr(s["text"])
        assert s["subject"] == "p1" + s["meta"]["study"][2:]
    assert len(by_study["s50000000"]) == 3  # at most 3 common views per study
    assert [s["meta"]["view"] for s in by_study["s50000000"]] == ["PA", "PA", "AP"]
    assert [s["meta"]["view"] for s in by_study["s50000002"]] == ["PA"]  # the LL view is left out
    assert {s["split"] for s in by_study["s50000006"]} == {"val"}


def test_monochrome1_is_inverted(tmp_path):
    img = radiograph(3, 32)
    _dicom(tmp_path / "m1.dcm", img, mono1=True)
    _dicom(tmp_path / "m2.dcm", img)
    a, b = read_cxr(tmp_path / "m1.dcm"), read_cxr(tmp_path / "m2.dcm")
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < -0.99
    assert np.allclose(b, img.astype(np.float32))


def test_limit_and_wrong_folder(tmp_path):
    src = _mini(tmp_path / "mimic", jpg=True)
    run_prepare(get_adapter("mimic-cxr"), src, tmp_path / "o", PrepareOptions(size=16, limit=3))
    info, samples = load_manifest(tmp_path / "o")
    assert info["splits"] == {"train": 1, "val": 1, "test": 1} and info["split_scaled"] is True
    assert load_slice(tmp_path / "o", samples[0]["files"]["xray"]).shape == (16, 16)
    (src / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(DataError, match="expected files/p10..p19/ and mimic-cxr-2.0.0-split.csv.gz.*found files/"):
        run_prepare(get_adapter("mimic-cxr"), src, tmp_path / "x", PrepareOptions())
