"""IXI adapter: layout quirks, ordered 25/5/10 split (scaled), slice selection, registration, phantom layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import head, nifti, read_jsonl

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest, load_slice


def _mini_ixi(root):
    """8 subjects in per-tarball folders; IXI005 lacks PD, IXI007 is .nii, plus unrelated files."""
    sites = ("Guys", "HH", "IOP")
    for i in range(2, 10):
        key = f"IXI{i:03d}-{sites[i % 3]}-{1000 + i}"
        for tag in ("T1", "T2", "PD"):
            if i == 5 and tag == "PD":
                continue
            ext = ".nii" if i == 7 else ".nii.gz"
            nifti(root / f"IXI-{tag}" / f"{key}-{tag}{ext}", head(seed=i, value={"T1": 800, "T2": 500, "PD": 650}[tag]))
    (root / "IXI.xls").write_bytes(b"not parsed")
    nifti(root / "IXI-MRA" / "IXI002-Guys-1002-MRA.nii.gz", head())
    return root


def test_miniature_split_quirks_and_slices(tmp_path):
    src = _mini_ixi(tmp_path / "IXI")
    out = tmp_path / "out"
    res = run_prepare(get_adapter("ixi"), src, out, PrepareOptions(size=16, slices=3, extra={"register": "false"}))
    info, samples = load_manifest(out)
    # 7 complete subjects < 40: 25/5/10 scaled to 4/1/2 (largest remainders), in sorted order
    assert info["splits"] == {"train": 4, "val": 1, "test": 2}
    assert info["split_scaled"] is True
    assert res.skipped == ["IXI005-IOP-1005: missing PD"]
    subj = {s["subject"]: s["split"] for s in samples}
    assert sorted(subj) == ["IXI002-IOP-1002", "IXI003-Guys-1003", "IXI004-HH-1004", "IXI006-Guys-1006",
                            "IXI007-HH-1007", "IXI008-IOP-1008", "IXI009-Guys-1009"]
    assert [subj[k] for k in sorted(subj)] == ["train"] * 4 + ["val"] + ["test"] * 2
    # the ellipsoid is widest at z=7 and symmetric around it: the 3 slices with most head are 6, 7, 8
    for s in samples:
        assert sorted(s["files"]) == ["pd", "t1", "t2"]
    assert sorted({s["meta"]["slice"] for s in samples}) == [6, 7, 8]
    assert len(samples) == 7 * 3
    # pairing: every contrast of a sample is the same slice of the same subject
    for s in samples:
        assert all(f"slices/{s['subject']}/" in p and p.endswith(f"_{s['meta']['slice']:03d}.png") for p in s["files"].values())
        img = load_slice(out, s["files"]["t1"])
        assert img.shape == (16, 16) and img.max() > 0.5 and img.min() < -0.9


def test_limit_scales_the_split_and_says_so(tmp_path):
    src = _mini_ixi(tmp_path / "IXI")
    run_prepare(get_adapter("ixi"), src, tmp_path / "o", PrepareOptions(size=16, slices=1, limit=5, extra={"register": "false"}))
    info = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert info["splits"] == {"train": 3, "val": 1, "test": 1} and info["split_scaled"] is True
    assert any("--limit 5" in n for n in info["notes"])
    assert info["subject_counts"] == {"train": 3, "val": 1, "test": 1}


def test_wrong_folder_one_clear_line(tmp_path, capsys):
    from medm2g_cli.main import run

    bad = tmp_path / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001"
    bad.mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        run(["prepare", "ixi", str(bad.parent), "-o", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "expected IXI<id>-<site>-<n>-{T1,T2,PD}.nii.gz" in err and "found BraTS20_Training_001/" in err


def test_registration_recovers_known_misalignment(phantom_ixi):
    """T2/PD moved by a known rotation + translation are registered back to T1 to under one voxel."""
    import SimpleITK as sitk  # noqa: N813

    from medm2g_cli.data.adapters.ixi import register_to_t1
    from medm2g_cli.io import read_volume
    from medm2g_cli.io.itk import sitk_to_volume, volume_to_sitk

    key = sorted(p.name[:-10] for p in phantom_ixi.glob("*-T1.nii.gz"))[0]
    t1 = read_volume(phantom_ixi / f"{key}-T1.nii.gz")
    t2 = read_volume(phantom_ixi / f"{key}-T2.nii.gz")
    pd = read_volume(phantom_ixi / f"{key}-PD.nii.gz")
    f = volume_to_sitk(t2, np.float32)
    centre = f.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in f.GetSize()])
    true = sitk.Euler3DTransform(centre, np.deg2rad(3.0), np.deg2rad(-2.0), np.deg2rad(5.0), (4.0, -3.0, 5.0))
    moved = {n: sitk_to_volume(sitk.Resample(volume_to_sitk(v, np.float32), f, true, sitk.sitkLinear, 0.0), "mri")
             for n, v in (("t2", t2), ("pd", pd))}
    t2r, pdr, reg = register_to_t1(t1, moved["t2"], moved["pd"], "affine")
    rec = reg["transform"]
    brain = np.argwhere(t1.array > np.percentile(t1.array, 70))[::50]
    err = []
    for ijk in brain:
        p = f.TransformIndexToPhysicalPoint([int(v) for v in ijk])
        q = true.TransformPoint(rec.TransformPoint(p))
        err.append(np.linalg.norm(np.subtract(q, p)))
    assert max(err) < 2.0, f"max residual {max(err):.2f} mm (voxel 2 mm)"  # under one voxel
    # before registration the same points were misplaced by several mm
    before = [np.linalg.norm(np.subtract(true.TransformPoint(f.TransformIndexToPhysicalPoint([int(v) for v in ijk])),
                                         f.TransformIndexToPhysicalPoint([int(v) for v in ijk]))) for ijk in brain]
    assert min(before) > 3.0
    # PD went through the same transform: it lines up with the original PD again
    m = t1.array > np.percentile(t1.array, 70)
    for name, fixed_up, orig in (("pd", pdr, pd), ("t2", t2r, t2)):
        before_r = np.corrcoef(moved[name].array[m], orig.array[m])[0, 1]
        after_r = np.corrcoef(fixed_up.array[m], orig.array[m])[0, 1]
        assert after_r > 0.85 and after_r > before_r + 0.2, (name, before_r, after_r)


def test_phantom_ixi_layout_goes_through(phantom_ixi, tmp_path):
    out = tmp_path / "prep"
    res = run_prepare(get_adapter("ixi"), phantom_ixi, out, PrepareOptions(size=32, slices=6))
    info, samples = load_manifest(out)
    assert res.failed == [] and res.skipped == []
    assert info["name"] == "ixi" and info["keys"] == ["t1", "t2", "pd"]
    assert info["splits"] == {"train": 1, "val": 0, "test": 0} and info["split_scaled"] is True
    assert len(samples) == 6 and not (out / ".parts").exists()
    recs = read_jsonl(out / "samples.jsonl")
    assert all(r["meta"]["registration_metric"] < -0.1 for r in recs)  # MI of a real fit, not a failure
    # phantom contrasts are aligned: after registration T1 and T2 slices still share the head outline
    s = samples[0]
    a, b = load_slice(out, s["files"]["t1"]) > -0.9, load_slice(out, s["files"]["t2"]) > -0.9
    assert (a & b).sum() / (a | b).sum() > 0.8
