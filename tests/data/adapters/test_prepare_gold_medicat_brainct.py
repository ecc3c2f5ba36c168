"""Gold Atlas (DICOM series by tags), MedICaT (figures + captions) and the Kaggle brain MRI-CT arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import head, png, radiograph

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest, load_slice
from medm2g_cli.errors import DataError


def _series(folder, arr, modality, pid, description, echo=None):
    from medm2g_cli.io import Volume
    from medm2g_cli.io.dicom_write import build_series

    folder.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(build_series(Volume(arr, np.diag([2.0, 2.0, 3.0, 1.0]), modality), source_meta={"PatientID": pid})):
        ds.SeriesDescription = description
        if echo is not None:
            ds.EchoTime = echo
        ds.save_as(str(folder / f"{description[:4].strip()}_{k:03d}.dcm"), enforce_file_format=True)


def _mini_gold(root, n=5):
    """Patient folders with misleading sub-folder names; one patient lacks T1; patient 3's T2 is told by EchoTime."""
    for i in range(n):
        pid = f"GA{10 - i:02d}"  # folder order is not PatientID order
        d = root / f"archive_{i}"
        body = head(shape=(16, 16, 10), z_range=(2, 8), peak_z=5, seed=i, value=900.0)
        _series(d / "T1_folder", (body * 1.1).astype(np.int16), "mri", pid, "T2 TSE AX" if i != 3 else "AX TSE", echo=97.0)
        if i != 4:
            _series(d / "T2_folder", body.astype(np.int16), "mri", pid, "T1 VIBE AX", echo=4.8)
        _series(d / "ct", (body - 1000).astype(np.int16), "ct", pid, "CT planning")
        _series(d / "x", (np.where(body > 50, 40, -1000)).astype(np.int16), "ct", pid, "CT deformed to MR")
    return root


def test_gold_atlas_series_by_tags_and_split(tmp_path):
    src = _mini_gold(tmp_path / "gold")
    res = run_prepare(get_adapter("gold-atlas-pelvis"), src, tmp_path / "o",
                      PrepareOptions(size=16, slices=3, extra={"register": "false"}))
    info, samples = load_manifest(tmp_path / "o")
    assert len(res.skipped) == 1 and res.skipped[0].startswith("GA06 (archive_4): no T1 series")
    # 4 patients, 9/2/4 scaled to 2/1/1 in PatientID order (GA07 < GA08 < GA09 < GA10)
    assert info["patients_used"] == {"GA07": "train", "GA08": "train", "GA09": "val", "GA10": "test"}
    assert info["series"]["GA08"] == {"t1": "T1 VIBE AX", "t2": "T2 TSE AX", "ct": "CT deformed to MR"}
    assert info["series"]["GA07"]["t2"] == "AX TSE"  # no T1/T2 in the description: EchoTime 97 ms -> T2
    for s in samples:
        assert sorted(s["files"]) == ["ct", "t1", "t2"] and s["meta"]["slice"] in (4, 5, 6)
        ct = load_slice(tmp_path / "o", s["files"]["ct"])
        assert np.unique(np.round(ct, 2)).size <= 6  # the two-valued deformed CT, not the planning CT


def test_gold_atlas_not_dicom(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="expected one folder per patient holding DICOM .* found p1/"):
        run_prepare(get_adapter("gold-atlas-pelvis"), tmp_path, tmp_path.parent / "gold_o", PrepareOptions())


def test_medicat_filter_and_paper_split(tmp_path):
    src = tmp_path / "medicat"
    rows = []
    for p in range(10):
        for f in range(2):
            radiology = not (p == 0 and f == 1)
            cap = f"Axial CT of case {p}." if f == 0 else f"MRI image {p}."
            rows.append({"pdf_hash": f"h{p:03d}", "fig_uri": f"fig{f}.jpg", "s2_caption": cap, "s2orc_caption": "",
                         "radiology": radiology, "predicted_type": "radiology", "oa_info": {"license": "CC BY"}})
            if not (p == 1 and f == 0):
                png(src / "figures" / f"h{p:03d}_fig{f}.jpg", radiograph(p * 2 + f, 24), mode="RGB")
    (src / "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "subcaptions_public.jsonl").write_text('{"x": 1}\n')
    res = run_prepare(get_adapter("medicat"), src, tmp_path / "o", PrepareOptions(size=16))
    info, samples = load_manifest(tmp_path / "o")
    assert res.skipped == ["h001_fig0.jpg: missing under figures/"]
    assert len(samples) == 18  # 20 figures - 1 not radiology - 1 missing
    assert info["splits"] == {"train": 7, "val": 1, "test": 2}
    papers = {}
    for s in samples:
        papers.setdefault(s["subject"], set()).add(s["split"])
    assert all(len(v) == 1 for v in papers.values())
    run_prepare(get_adapter("medicat"), src, tmp_path / "ct", PrepareOptions(size=16, extra={"filter": "ct"}))
    _, ct = load_manifest(tmp_path / "ct")
    assert sorted(s["text"] for s in ct) == sorted(f"Axial CT of case {p}." for p in range(10) if p != 1)


def test_brain_mri_ct_pairs_and_limit(tmp_path):
    d = tmp_path / "kaggle" / "data(processed)"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for sp, n in (("train", 70), ("val", 10), ("test", 20)):
        mri = rng.uniform(0, 1, (n, 20, 20))
        np.save(d / f"{sp}_input.npy", mri)
        np.save(d / f"{sp}_output.npy", 1 - mri)  # CT = inverted MRI: the pairing is checkable
    run_prepare(get_adapter("brain-mri-ct"), tmp_path / "kaggle", tmp_path / "o", PrepareOptions(size=20))
    info, samples = load_manifest(tmp_path / "o")
    assert info["splits"] == {"train": 70, "val": 10, "test": 20} and len(samples) == 100
    s = next(x for x in samples if x["id"] == "val_00003")
    a, b = load_slice(tmp_path / "o", s["files"]["mri"]), load_slice(tmp_path / "o", s["files"]["ct"])
    assert np.allclose(a, -b, atol=1e-3)
    run_prepare(get_adapter("brain-mri-ct"), tmp_path / "kaggle", tmp_path / "l", PrepareOptions(size=8, limit=10))
    info, _ = load_manifest(tmp_path / "l")
    assert info["splits"] == {"train": 7, "val": 1, "test": 2} and info["split_scaled"] is True
    with pytest.raises(DataError, match=r"expected data\(processed\)/"):
        run_prepare(get_adapter("brain-mri-ct"), d.parent.parent, tmp_path.parent / (tmp_path.name + "_x"), PrepareOptions())
