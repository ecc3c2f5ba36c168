"""ChestX-ray14 adapter: the comma-in-brackets header, patient-level seeded split, official lists, non-L PNGs."""

from __future__ import annotations

import pytest
from conftest import png, radiograph

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest
from medm2g_cli.errors import DataError

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n")


def _mini(root, n_patients=10, sex_col="Patient Gender"):
    lines = [HEADER.replace("Patient Gender", sex_col)]
    names = []
    for p in range(1, n_patients + 1):
        for f in range(2 if p % 2 else 1):
            name = f"{p:08d}_{f:03d}.png"
            names.append(name)
            labels = "No Finding" if p % 3 else "Cardiomegaly|Effusion"
            lines.append(f"{name},{labels},{f},{p},{40 + p},{'M' if p % 2 else 'F'},PA,2500,2048,0.143,0.143,\n")
            folder = root / f"images_{1 + p % 2:03d}" / "images"  # the Kaggle copy's layout
            png(folder / name, radiograph(p * 10 + f, 32), mode="RGBA" if p == 3 else None)
    lines.append("00000099_000.png,No Finding,0,99,50,M,PA,2500,2048,0.143,0.143,\n")  # listed, not on disk
    (root / "Data_Entry_2017.csv").write_text("".join(lines))
    return root, names


def test_seeded_patient_split_and_header(tmp_path):
    src, names = _mini(tmp_path / "cxr14", sex_col="Patient Sex")
    res = run_prepare(get_adapter("chestxray14"), src, tmp_path / "o", PrepareOptions(size=16))
    info, samples = load_manifest(tmp_path / "o")
    assert res.skipped == ["00000099_000.png: listed in Data_Entry_2017.csv but not found under images/"]
    assert sorted(s["id"] + ".png" for s in samples) == sorted(names)
    assert info["splits"] == {"train": 7, "val": 1, "test": 2} and info["split_unit"] == "patient"
    per_patient = {}
    for s in samples:
        per_patient.setdefault(s["subject"], set()).add(s["split"])
    assert all(len(v) == 1 for v in per_patient.values())  # no patient crosses splits
    by = {s["id"]: s for s in samples}
    assert by["00000003_000"]["meta"]["labels"] == ["Cardiomegaly", "Effusion"]
    assert by["00000003_000"]["text"] == "Cardiomegaly, Effusion" and by["00000001_001"]["text"] == "No Finding"
    assert by["00000001_000"]["meta"]["sex"] == "M" and by["00000001_000"]["meta"]["view"] == "PA"


def test_header_repair_maps_the_bracketed_columns(tmp_path):
    from medm2g_cli.data.adapters.chestxray14 import read_data_entry

    src, _ = _mini(tmp_path / "c", n_patients=1)
    row = read_data_entry(src / "Data_Entry_2017.csv")[0]
    assert row["OriginalImage[Width,Height]"] == "2500,2048"
    assert row["OriginalImagePixelSpacing[x,y]"] == "0.143,0.143" and "" not in row


def test_official_lists_and_limit(tmp_path):
    src, _ = _mini(tmp_path / "c")
    (src / "test_list.txt").write_text("00000002_000.png\n00000005_000.png\n00000005_001.png\n")
    (src / "train_val_list.txt").write_text("\n".join(f"{p:08d}_000.png" for p in (1, 3, 4, 6, 7, 8, 9, 10)))
    run_prepare(get_adapter("chestxray14"), src, tmp_path / "o", PrepareOptions(size=16, extra={"official_split": "true"}))
    _, samples = load_manifest(tmp_path / "o")
    assert {s["subject"] for s in samples if s["split"] == "test"} == {"00000002", "00000005"}
    assert {s["split"] for s in samples} == {"train", "val", "test"}
    run_prepare(get_adapter("chestxray14"), src, tmp_path / "l", PrepareOptions(size=16, limit=4))
    info, samples = load_manifest(tmp_path / "l")
    assert sorted({s["subject"] for s in samples}) == ["00000001", "00000002", "00000003", "00000004"]
    assert info["split_scaled"] is True and "--limit 4" in info["notes"][0]


def test_not_chestxray14(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="expected Data_Entry_2017.csv and images/.*found images/"):
        run_prepare(get_adapter("chestxray14"), tmp_path, tmp_path.parent / "x14o", PrepareOptions())
