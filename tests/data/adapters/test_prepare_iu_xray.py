"""IU X-ray adapter: R2Gen annotation.json (phantom layout) and the Kaggle CSV variant with its quirks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import png, radiograph

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest, load_slice
from medm2g_cli.data.text_clean import clean_report_iu_xray
from medm2g_cli.errors import DataError


def test_phantom_r2gen_layout_keeps_the_r2gen_split(phantom_iu, tmp_path):
    out = tmp_path / "prep"
    run_prepare(get_adapter("iu-xray"), phantom_iu, out, PrepareOptions(size=32))
    info, samples = load_manifest(out)
    ann = json.loads((phantom_iu / "annotation.json").read_text())
    assert info["splits"] == {sp: len(ann[sp]) for sp in ("train", "val", "test")} and info["split_scaled"] is False
    assert info["comparable_with_r2gen"] is True and info["variant"] == "r2gen"
    by = {s["id"]: s for s in samples}
    for sp in ("train", "val", "test"):
        for e in ann[sp]:
            s = by[e["id"]]
            assert s["split"] == sp and s["text"] == " ".join(e["report"].split())
            assert s["meta"]["report_clean"] == clean_report_iu_xray(s["text"])
            assert sorted(s["files"]) == ["xray", "xray_lateral"]
    # the frontal picture is the source's 0.png (fitted to 32 px): correlated with it, not with 1.png
    from PIL import Image

    s = samples[0]
    got = load_slice(out, s["files"]["xray"])
    src0 = np.asarray(Image.open(phantom_iu / "images" / s["id"] / "0.png").convert("L").resize((32, 32)), np.float32)
    src1 = np.asarray(Image.open(phantom_iu / "images" / s["id"] / "1.png").convert("L").resize((32, 32)), np.float32)
    assert np.corrcoef(got.ravel(), src0.ravel())[0, 1] > 0.9
    assert np.corrcoef(got.ravel(), src0.ravel())[0, 1] > np.corrcoef(got.ravel(), src1.ravel())[0, 1]


def test_limit_scales_the_r2gen_split(phantom_iu, tmp_path):
    run_prepare(get_adapter("iu-xray"), phantom_iu, tmp_path / "o", PrepareOptions(size=16, limit=3))
    info, _ = load_manifest(tmp_path / "o")
    assert info["splits"] == {"train": 1, "val": 1, "test": 1} and info["split_scaled"] is True
    assert "scaled to 1/1/1" in info["notes"][0]


def _kaggle(root, n=12):
    """indiana_reports.csv + indiana_projections.csv + images/images_normalized; quirks: RGB and 16-bit PNGs,
    a study without findings, a study without a frontal view, a listed-but-missing image."""
    img = root / "images" / "images_normalized"
    reports, projections = [], []
    for uid in range(1, n + 1):
        findings = "" if uid == 4 else f"The heart is normal in size. Finding number {uid}."
        reports.append({"uid": uid, "MeSH": "normal", "Problems": "normal", "image": f"Xray {uid}",
                        "indication": "", "comparison": "", "findings": findings, "impression": "No acute disease."})
        views = [("Lateral", 2)] if uid == 5 else [("Frontal", 1), ("Lateral", 2)]
        for proj, k in views:
            name = f"{uid}_IM-{uid:04d}-{k}001.dcm.png"
            projections.append({"uid": uid, "filename": name, "projection": proj})
            if uid == 6 and proj == "Lateral":
                continue  # listed but not on disk
            mode = "RGB" if uid == 2 else None
            if uid == 3:
                png(img / name, radiograph(uid * 10 + k).astype(np.uint16) * 257, mode="I;16")
            else:
                png(img / name, radiograph(uid * 10 + k), mode=mode)
    for name, rows in (("indiana_reports.csv", reports), ("indiana_projections.csv", projections)):
        with open(root / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


def test_kaggle_variant_seeded_split_and_quirks(tmp_path):
    src = _kaggle(tmp_path / "kaggle")
    res = run_prepare(get_adapter("iu-xray"), src, tmp_path / "o", PrepareOptions(size=16, seed=1))
    info, samples = load_manifest(tmp_path / "o")
    assert sorted(res.skipped) == ["4: no findings text", "5: no frontal image in indiana_projections.csv",
                                   "6: image 6_IM-0006-2001.dcm.png is missing under images_normalized/"]
    assert info["comparable_with_r2gen"] is False and "non-R2Gen split" in info["split_rule"]
    # 9 studies, seeded 70/10/20: round(6.3)=6, round(0.9)=1, rest 2
    assert info["splits"] == {"train": 6, "val": 1, "test": 2}
    assert {s["split"] for s in samples} == {"train", "val", "test"}
    by = {s["id"]: s for s in samples}
    assert by["2"]["text"] == "The heart is normal in size. Finding number 2."  # findings section only
    for k, seed in (("2", 21), ("3", 31)):  # RGB and 16-bit pictures were read as the picture they hold
        a = load_slice(tmp_path / "o", by[k]["files"]["xray"])
        ref = radiograph(seed).astype(np.float32).reshape(16, 3, 16, 3).mean(axis=(1, 3))
        assert np.corrcoef(a.ravel(), ref.ravel())[0, 1] > 0.9
    # the split is reproducible with the seed and changes with another seed
    run_prepare(get_adapter("iu-xray"), src, tmp_path / "o2", PrepareOptions(size=16, seed=1))
    _, again = load_manifest(tmp_path / "o2")
    assert {s["id"]: s["split"] for s in again} == {s["id"]: s["split"] for s in samples}


def test_not_iu_xray(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "reports.txt").write_text("x")
    with pytest.raises(DataError) as e:
        run_prepare(get_adapter("iu-xray"), tmp_path, tmp_path.parent / (tmp_path.name + "_o"), PrepareOptions())
    line = e.value.one_line()
    assert "expected annotation.json + images/" in line and "found images/, reports.txt" in line
