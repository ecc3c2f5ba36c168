"""`info`, `convert`, `register` and the root CLI, end to end on files that packages ship."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medm2g_cli.main import COMMAND_MODULES, run


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        run(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_and_version_do_not_import_torch():
    code = ("import sys; from medm2g_cli.main import run\n"
            "for argv in (['--help'], ['--version'], ['translate', '--help'], ['pretrain', '--help']):\n"
            "    try:\n        run(argv)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'SimpleITK' not in sys.modules and 'diffusers' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "medm2g" in out.stdout


def test_every_command_has_help_with_examples(capsys):
    for name in COMMAND_MODULES:
        cmd = {"evaluate": "eval"}.get(name, name.replace("_", "-"))
        code, out, _ = _run([cmd, "--help"], capsys)
        assert code == 0, name
        assert "Usage" in out and "medm2g" in out, name


def test_info_json_on_real_dicom_and_nifti(pydicom_file, nib_data, capsys):
    code, out, _ = _run(["info", str(pydicom_file("CT_small.dcm")), "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    for key in ("shape", "spacing", "affine", "orientation", "dtype", "min", "max", "modality"):
        assert key in d, key
    assert d["modality"] == "ct" and d["shape"][:2] == [128, 128] and d["min"] < -500  # HU after rescale
    code, out, _ = _run(["info", str(nib_data / "anatomical.nii"), "--json", "--modality", "mri"], capsys)
    d = json.loads(out)
    assert code == 0 and d["modality"] == "mri" and len(d["orientation"]) == 3
    np.testing.assert_allclose(np.array(d["affine"]), nib.load(str(nib_data / "anatomical.nii")).affine, atol=1e-4)


def test_convert_nifti_dicom_nifti_keeps_affine_and_values(mni_t1, tmp_path, capsys):
    img = nib.load(str(mni_t1))
    arr = np.asarray(img.dataobj)[::4, ::4, ::4].astype(np.int16)
    aff = img.affine.copy()
    aff[:3, :3] *= 4
    src = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(arr, aff), str(src))
    assert _run(["convert", str(src), str(tmp_path / "dcm"), "--format", "dicom", "--modality", "mri"], capsys)[0] == 0
    assert len(list((tmp_path / "dcm").glob("*.dcm"))) == arr.shape[2]
    assert _run(["convert", str(tmp_path / "dcm"), str(tmp_path / "back.nii.gz")], capsys)[0] == 0
    back = nib.load(str(tmp_path / "back.nii.gz"))
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(back.dataobj), arr)
    # existing output: refused, untouched
    before = (tmp_path / "back.nii.gz").read_bytes()
    code, _, err = _run(["convert", str(tmp_path / "dcm"), str(tmp_path / "back.nii.gz")], capsys)
    assert code == 2 and err.count("error:") == 1 and "--overwrite" in err
    assert (tmp_path / "back.nii.gz").read_bytes() == before


def test_convert_to_png_slices_and_back_with_reference(mni_t1, tmp_path, capsys):
    img = nib.load(str(mni_t1))
    arr = np.asarray(img.dataobj)[::8, ::8, ::8].astype(np.float32)
    src = tmp_path / "v.nii.gz"
    aff = img.affine.copy()
    aff[:3, :3] *= 8
    nib.save(nib.Nifti1Image(arr, aff), str(src))
    code, _, err = _run(["convert", str(src), str(tmp_path / "png"), "--format", "png", "--window", "auto"], capsys)
    assert code == 0, err
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == arr.shape[2]
    code, _, err = _run(["convert", str(tmp_path / "png"), str(tmp_path / "back.nii.gz")], capsys)
    assert code == 2 and "--reference" in err and not (tmp_path / "back.nii.gz").exists()
    code, _, err = _run(["convert", str(tmp_path / "png"), str(tmp_path / "back.nii.gz"), "--reference", str(src)], capsys)
    assert code == 0, err
    back = nib.load(str(tmp_path / "back.nii.gz"))
    assert back.shape == arr.shape
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)


@pytest.mark.timeout(300)
def test_register_recovers_a_shift_and_prints_the_metric(tmp_path, capsys):
    yy, xx, zz = np.mgrid[0:40, 0:40, 0:24].astype(np.float32)
    fixed = np.exp(-((xx - 20) ** 2 + (yy - 18) ** 2 + (zz - 12) ** 2) / 60.0) * 1000
    fixed += np.exp(-((xx - 10) ** 2 + (yy - 28) ** 2 + (zz - 8) ** 2) / 20.0) * 600
    moving = np.roll(fixed, 3, axis=0)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(fixed, aff), str(tmp_path / "f.nii.gz"))
    nib.save(nib.Nifti1Image(moving, aff), str(tmp_path / "m.nii.gz"))
    code, out, err = _run(["register", str(tmp_path / "f.nii.gz"), str(tmp_path / "m.nii.gz"), "-o",
                           str(tmp_path / "r.nii.gz"), "--transform", "rigid", "--json",
                           "--save-transform", str(tmp_path / "t.tfm")], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert "metric" in json.dumps(d)
    res = np.asarray(nib.load(str(tmp_path / "r.nii.gz")).dataobj)
    assert res.shape == fixed.shape
    err_before = np.abs(moving - fixed).mean()
    err_after = np.abs(res - fixed)[4:-4, 4:-4, 4:-4].mean()
    assert err_after < 0.3 * err_before
    assert (tmp_path / "t.tfm").is_file()
