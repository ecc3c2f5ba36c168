"""Phantom cohort writers and the `medm2g phantom` command: exact layouts, geometry, byte determinism."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medm2g_cli.data.phantom import findings_from_report, write_brain_cohort, write_chest_cohort
from medm2g_cli.main import app


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".medm2g")


def test_ixi_layout(tmp_path):
    s = write_brain_cohort(tmp_path / "ixi", 1, seed=3, layout="ixi")
    key = s["subjects"][0]["subject"]
    assert key.startswith("IXI002-Guys-")
    assert _files(tmp_path / "ixi") == sorted([f"{key}-T1.nii.gz", f"{key}-T2.nii.gz", f"{key}-PD.nii.gz",
                                               "subjects.csv", "subjects.json"])
    img = nib.load(tmp_path / "ixi" / f"{key}-T1.nii.gz")
    assert img.get_data_dtype() == np.int16 and img.shape == (99, 117, 95)
    assert np.allclose(img.header.get_sform(), img.header.get_qform()) and img.header["sform_code"] == 1
    assert np.allclose(img.affine[:3, :3], np.eye(3) * 2)
    assert not s["subjects"][0]["tumour"]  # IXI volunteers are healthy by default


def test_brats_layout(tmp_path):
    write_brain_cohort(tmp_path / "b", 1, seed=4, layout="brats")
    k = "BraTS20_Training_001"
    assert _files(tmp_path / "b") == sorted([f"{k}/{k}_{c}.nii.gz" for c in ("t1", "t1ce", "t2", "flair", "seg")]
                                            + ["name_mapping.csv", "subjects.json"])
    seg = np.asarray(nib.load(tmp_path / "b" / k / f"{k}_seg.nii.gz").dataobj)
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}
    t1 = np.asarray(nib.load(tmp_path / "b" / k / f"{k}_t1.nii.gz").dataobj)
    assert t1[0, 0, 0] == 0 and (t1[seg > 0] > 0).mean() > 0.95  # skull-stripped, tumour kept
    rows = list(csv.DictReader(open(tmp_path / "b" / "name_mapping.csv")))
    assert rows[0]["BraTS_2020_subject_ID"] == k and rows[0]["Grade"] == "HGG"


def test_plain_layout_is_byte_deterministic(tmp_path):
    a = write_brain_cohort(tmp_path / "a", 1, seed=9, layout="plain", tumour_rate=1.0)
    write_brain_cohort(tmp_path / "b", 1, seed=9, layout="plain", tumour_rate=1.0)
    names = _files(tmp_path / "a")
    assert names == sorted([f"sub-001/{c}.nii.gz" for c in ("t1", "t2", "pd", "flair", "t1ce", "ct", "labels")]
                           + ["sub-001/finding.txt", "subjects.csv", "subjects.json"])
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    lab = nib.load(tmp_path / "a" / "sub-001" / "labels.nii.gz")
    ct = nib.load(tmp_path / "a" / "sub-001" / "ct.nii.gz")
    assert lab.get_data_dtype() == np.uint8 and ct.get_data_dtype() == np.int16
    assert np.array_equal(lab.affine, ct.affine)
    assert (tmp_path / "a" / "sub-001" / "finding.txt").read_text().strip() == a["subjects"][0]["finding"]


def test_chest_iu_xray_layout(tmp_path):
    s = write_chest_cohort(tmp_path / "c", 10, seed=2, layout="iu-xray")
    ann = json.loads((tmp_path / "c" / "annotation.json").read_text())
    assert set(ann) == {"train", "val", "test"} and sum(map(len, ann.values())) == 10
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "c" / "labels.csv"))}
    for split, items in ann.items():
        for it in items:
            assert set(it) == {"id", "report", "image_path", "split"} and it["split"] == split
            assert it["image_path"] == [f"{it['id']}/0.png", f"{it['id']}/1.png"]
            for p in it["image_path"]:
                assert (tmp_path / "c" / "images" / p).is_file()
            named = findings_from_report(it["report"])
            labelled = {k for k in ("cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation", "nodule")
                        if rows[it["id"]][k] == "1"}
            assert named == labelled
    assert s["splits"] == {k: len(v) for k, v in ann.items()}
    write_chest_cohort(tmp_path / "d", 10, seed=2, layout="iu-xray")
    for n in _files(tmp_path / "c"):
        assert (tmp_path / "c" / n).read_bytes() == (tmp_path / "d" / n).read_bytes(), n


def test_cli_chest_plain_and_errors(tmp_path):
    r = CliRunner().invoke(app, ["phantom", "chest", "-o", str(tmp_path / "p"), "--n", "2", "--layout", "plain", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 2
    assert (tmp_path / "p" / "labels.csv").is_file()
    ids = [p.name for p in (tmp_path / "p").iterdir() if p.is_dir()]
    assert len(ids) == 2 and all((tmp_path / "p" / i / "report.txt").is_file() for i in ids)
    # existing output without --overwrite: one-line error, exit 2, nothing changed
    before = _files(tmp_path / "p")
    proc = subprocess.run([sys.executable, "-m", "medm2g_cli", "phantom", "chest", "-o", str(tmp_path / "p"), "--n", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert _files(tmp_path / "p") == before
    proc = subprocess.run([sys.executable, "-m", "medm2g_cli", "phantom", "brain", "-o", str(tmp_path / "q"),
                           "--layout", "nifti"], capture_output=True, text=True)
    assert proc.returncode == 2 and "layout" in proc.stderr and not (tmp_path / "q").exists()


@pytest.mark.parametrize("args", [["phantom", "--help"], ["phantom", "brain", "--help"], ["phantom", "chest", "--help"]])
def test_help(args):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "Example" in r.output
