"""SLIVER07 (MetaImage CT) and ACDC (Info.cfg, ED/ES frames) adapters on miniature layouts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import head, nifti

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
from medm2g_cli.data.manifest import load_manifest, load_slice
from medm2g_cli.errors import DataError


def _mhd(path, arr, spacing=(1.5, 1.5, 3.0)):
    import SimpleITK as sitk  # noqa: N813

    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))))  # (x,y,z) -> ITK (z,y,x)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))  # writes the .raw next to it (ElementDataFile)


def _mini_sliver(root):
    for i, part in ((1, "training-part1"), (2, "training-part1"), (3, "training-part2"), (4, "training-part2"), (21, "test")):
        ct = (head(shape=(16, 16, 10), z_range=(1, 9), peak_z=5, seed=i, value=1100.0) - 1000.0).astype(np.int16)
        _mhd(root / part / f"liver-orig{i:03d}.mhd", ct)
        if part != "test":
            seg = np.zeros(ct.shape, np.uint8)
            seg[4:10, 4:10, 3:6] = 1
            seg[5:8, 5:8, 6] = 1
            _mhd(root / part / f"liver-seg{i:03d}.mhd", seg)
    return root


def test_sliver07_all_slices_and_liver_selection(tmp_path):
    src = _mini_sliver(tmp_path / "sliver")
    res = run_prepare(get_adapter("sliver07"), src, tmp_path / "o", PrepareOptions(size=16))
    info, samples = load_manifest(tmp_path / "o")
    assert res.skipped == ["liver-021: no liver-seg mask (test scan; --option include_test=true keeps it)"]
    assert len(samples) == 4 * 10  # every axial slice of the 4 training scans
    assert sum(info["splits"].values()) == 4 and set(info["splits"]) == {"train", "val", "test"}
    s = next(x for x in samples if x["meta"]["slice"] == 4)
    assert s["meta"]["liver_voxels"] == 36 and s["text"].endswith("showing the liver")
    # HU survive: the slice's intensity record maps back to the CT window
    assert s["meta"]["intensity"]["ct"]["modality"] == "ct"
    run_prepare(get_adapter("sliver07"), src, tmp_path / "o2", PrepareOptions(size=16, slices=2))
    _, few = load_manifest(tmp_path / "o2")
    # slices 3-5 hold 36 liver voxels, slice 6 holds 9: the two chosen are among 3-5, nearest the centre
    assert {x["meta"]["slice"] for x in few} == {4, 5}
    with pytest.raises(DataError, match="expected liver-origNNN.mhd"):
        run_prepare(get_adapter("sliver07"), tmp_path / "o", tmp_path / "o3", PrepareOptions())


INFO = "ED: {ed}\nES: {es}\nGroup: {g}\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n"


def _mini_acdc(top, n=6):
    root = top / "database" / "training"
    for i in range(1, n + 1):
        p = f"patient{i:03d}"
        ed, es = 1, 9 + i
        (root / p).mkdir(parents=True)
        (root / p / "Info.cfg").write_text(INFO.format(ed=ed, es=es, g=("NOR", "DCM", "HCM")[i % 3]))
        if i == 4:
            es = 99  # the ES file on disk is not the frame Info.cfg names (13)
        for f in (ed, es):
            nifti(root / p / f"{p}_frame{f:02d}.nii.gz", head(shape=(24, 18, 5), z_range=(0, 5), peak_z=2, seed=i * f))
            nifti(root / p / f"{p}_frame{f:02d}_gt.nii.gz", np.zeros((24, 18, 5), np.uint8))
        nifti(root / p / f"{p}_4d.nii.gz", np.zeros((24, 18, 5, 3), np.int16))
    (top / "database" / "testing").mkdir()
    return top


def test_acdc_frames_slices_and_rescaling(tmp_path):
    src = _mini_acdc(tmp_path / "ACDC")
    res = run_prepare(get_adapter("acdc"), src, tmp_path / "o", PrepareOptions(size=32))
    info, samples = load_manifest(tmp_path / "o")
    assert res.skipped == ["patient004: patient004_frame13.nii.gz (ES) is missing"]
    assert len(samples) == 5 * 2 * 5  # 5 patients x (ED, ES) x 5 short-axis slices
    s = next(x for x in samples if x["subject"] == "patient001" and x["meta"]["phase"] == "ES")
    assert s["meta"]["frame"] == 10 and s["meta"]["group"] == "DCM" and "dilated cardiomyopathy" in s["text"]
    # [0, 255] per frame: each frame's brightest voxel is +1, the padding/darkest -1; 24x18 is padded square
    frames = {}
    for x in samples:
        frames.setdefault((x["subject"], x["meta"]["phase"]), []).append(load_slice(tmp_path / "o", x["files"]["mri"]))
    for stack in frames.values():
        a = np.stack(stack)
        assert a.shape[1:] == (32, 32) and a.min() == pytest.approx(-1, abs=1e-3) and a.max() > 0.8
        assert np.all(a[:, 0, :] < -0.99)  # zero-padded rows above the 18-row image
    assert sum(info["splits"].values()) == 5


def test_acdc_wrong_folder(tmp_path):
    (tmp_path / "patient001").mkdir()
    with pytest.raises(DataError) as e:
        run_prepare(get_adapter("acdc"), tmp_path, tmp_path.parent / "acdc_o", PrepareOptions())
    assert "expected database/training/patientNNN/ folders with Info.cfg; found patient001/" in e.value.one_line()
