"""The applicability guard: verdicts on in-domain, wrong-contrast, wrong-modality, wrong-region and
cropped inputs (real files shipped by pydicom and nibabel, the built-in phantom), the run-report
entry, the ``warning:`` line, and ``--strict`` refusing before any model work or output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import dicom_series

from medm2g_cli.inference.applicability import assess_input
from medm2g_cli.io.volume import Volume
from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def subject():  # noqa: ANN201 - a BrainSubject
    from medm2g_cli.data.phantom import generate_brain_subject

    return generate_brain_subject(3, resolution=2, tumour=False)


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory, subject) -> dict[str, Path]:  # noqa: ANN001
    import nibabel as nib

    folder = tmp_path_factory.mktemp("phantom")
    out = {}
    for c in ("t1", "t2", "ct"):
        out[c] = folder / f"{c}.nii.gz"
        nib.save(nib.Nifti1Image(subject.images[c], subject.affine), str(out[c]))
    return out


@pytest.fixture(scope="module")
def abdomen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pydicom's real abdominal MR (examples_overlay.dcm) as an 8-slice series, 4 mm apart."""
    return dicom_series(tmp_path_factory.mktemp("abd") / "abdomen", "examples_overlay.dcm", n=8, spacing=4.0)


def _mri(subject, contrast: str, crop: slice = slice(None)) -> Volume:  # noqa: ANN001
    return Volume(subject.images[contrast][:, :, crop], subject.affine, "mri")


def test_in_domain_phantom_t1_is_ok(subject) -> None:  # noqa: ANN001
    res = assess_input(_mri(subject, "t1"), "mri")
    assert res.verdict == "ok", res.reasons
    assert 0.5 <= res.score <= 1.0
    assert assess_input(Volume(subject.images["ct"], subject.affine, "ct"), "ct").verdict == "ok"


def test_t2_given_where_t1_is_expected_warns(subject) -> None:  # noqa: ANN001
    res = assess_input(_mri(subject, "t2"), "mri")
    assert res.verdict == "warn" and res.score < 0.5
    assert any(r.startswith("contrast:") and "T2" in r for r in res.reasons), res.reasons
    # the same T2 given as a T2 is fine, and a T1 given as a T2 is not: the signature is specific
    assert assess_input(_mri(subject, "t2"), "t2").verdict == "ok"
    assert assess_input(_mri(subject, "t1"), "t2").verdict == "warn"


@pytest.mark.parametrize("crop", [slice(66, None), slice(45, 50)], ids=["top-30pc", "thin-slab"])
def test_cropped_head_warns_on_field_of_view(subject, crop: slice) -> None:  # noqa: ANN001
    res = assess_input(_mri(subject, "t1", crop), "mri")
    assert res.verdict == "warn"
    assert any(r.startswith("field of view:") and "S-I" in r for r in res.reasons), res.reasons
    assert not any(r.startswith("contrast:") for r in res.reasons)


def test_real_abdominal_mr_warns_on_body_region(abdomen: Path) -> None:
    from medm2g_cli.io import read_volume

    res = assess_input(read_volume(abdomen), "mri")
    assert res.verdict == "warn"
    assert sum(r.startswith("body region:") for r in res.reasons) == 2, res.reasons


def test_real_t1_anatomical_nii_warns_on_its_cropped_field_of_view(nib_data: Path) -> None:
    """nibabel's anatomical.nii is a real 2 mm T1 cut to a 66 x 82 x 50 mm box inside the brain:
    its contrast passes (T1-like), its field of view does not."""
    from medm2g_cli.io import read_volume

    res = assess_input(read_volume(nib_data / "anatomical.nii"), "mri")
    assert res.verdict == "warn"
    assert all(r.startswith("field of view:") for r in res.reasons), res.reasons
    assert res.deviations["contrast"] < 1


def test_thick_slices_warn(subject) -> None:  # noqa: ANN001
    aff = subject.affine.copy()
    aff[2, 2] = 6.0  # 6 mm slices, same head
    res = assess_input(Volume(subject.images["t1"][:, :, ::3], aff, "mri"), "mri")
    assert any(r.startswith("resolution:") and "mm slices" in r for r in res.reasons), res.reasons


def test_ct_given_as_mri_keeps_the_hard_error(phantom_files: dict[str, Path], tmp_path: Path, tiny_weights: Path,
                                              no_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(phantom_files["ct"]), "-o", str(tmp_path / "o.nii.gz"),
             "--weights", str(tiny_weights), *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "looks like a CT" in err[0], err


def test_strict_refuses_other_body_region_before_any_model_work(abdomen: Path, tmp_path: Path, tiny_weights: Path,
                                                                no_model: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sct.nii.gz"
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(abdomen), "-o", str(out), "--weights", str(tiny_weights), "--strict", *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "body region" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even the run report


def test_strict_batch_refuses_before_creating_the_output_folder(phantom_files: dict[str, Path], tmp_path: Path,
                                                                tiny_weights: Path, no_model: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "cases.txt"
    lst.write_text(f"{phantom_files['t1']}\n{phantom_files['t2']}\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(lst), "-o", str(out), "--weights", str(tiny_weights), "--strict", *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t2.nii.gz" in err[0] and "contrast" in err[0], err
    assert not out.exists()


def test_warn_is_one_line_and_recorded_in_the_run_report(phantom_files: dict[str, Path], tmp_path: Path,
                                                         tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    img = nib.load(str(phantom_files["t2"]))
    slab = tmp_path / "t2_slab.nii.gz"  # a few slices keep the tiny model's run short
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 40:44], img.affine), str(slab))
    out = tmp_path / "sct.nii.gz"
    run(["translate", "mri2ct", str(slab), "-o", str(out), "--weights", str(tiny_weights), "-k", "2", *STEPS])
    warns = [ln for ln in capsys.readouterr().err.splitlines() if "outside the model's domain" in ln]
    assert len(warns) == 1 and "field of view" in warns[0], warns
    case = json.loads((tmp_path / "sct_run.json").read_text())["cases"][0]["applicability"]
    assert case["verdict"] == "warn" and case["score"] < 0.5 and case["reasons"]
    assert "sample_spread" in case["checks"] and case["stats"]["sample_spread"] >= 0  # after sampling (K = 2)


def test_synthesize_records_the_verdict_of_each_input(phantom_files: dict[str, Path], tmp_path: Path,
                                                      tiny_weights: Path, no_model: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # t2 given as t1 (and t1 as t2): refused with --strict, naming the inputs
    with pytest.raises(SystemExit) as exc:
        run(["synthesize", "-i", f"t1={phantom_files['t2']}", "-i", f"t2={phantom_files['t1']}", "--target", "pd",
             "-o", str(tmp_path / "pd.nii.gz"), "--weights", str(tiny_weights), "--strict", *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t1: contrast" in err[0] and "t2: contrast" in err[0], err
    assert not any(tmp_path.iterdir())


def test_help_lists_strict() -> None:
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200"}
    for cmd in ("translate", "synthesize", "report"):
        out = subprocess.run([sys.executable, "-m", "medm2g_cli", cmd, "--help"], capture_output=True, text=True,
                             env=env, check=True).stdout
        assert "--strict" in out


def test_head_drawn_at_another_scale_warns_on_resolution(subject) -> None:  # noqa: ANN001
    # the same 2 mm head padded into a 256-pixel frame spans 41 % of it, half the training scale
    assert assess_input(_mri(subject, "t1"), "mri", image_size=128).verdict == "ok"
    res = assess_input(_mri(subject, "t1"), "mri", image_size=256)
    assert [r for r in res.reasons if r.startswith("resolution:")], res.reasons


# -- chest X-rays given to ``report`` -------------------------------------------------------------------


def test_xray_verdicts(tmp_path: Path, pydicom_file) -> None:  # noqa: ANN001
    from PIL import Image

    from medm2g_cli.data.phantom import generate_chest
    from medm2g_cli.inference.applicability import assess_xray
    from medm2g_cli.io import read_volume

    png = tmp_path / "cxr.png"
    Image.fromarray(generate_chest(7).views[0]).save(png)
    assert assess_xray(read_volume(png, modality="xray")).verdict == "ok"
    ct = assess_xray(read_volume(pydicom_file("CT_small.dcm"), modality="xray"))  # a real CT slice
    assert ct.verdict == "warn" and ct.reasons[0].startswith("modality:"), ct.reasons
    spine = sorted((pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "77654033" / "CR1").iterdir())[0]
    cr = assess_xray(read_volume(spine, modality="xray"))  # a real 16 x 16 cervical-spine CR
    assert [r.split(":")[0] for r in cr.reasons] == ["body region", "resolution"], cr.reasons


def test_report_strict_refuses_a_ct_slice_before_the_model(tmp_path: Path, tiny_weights: Path, pydicom_file,  # noqa: ANN001
                                                            no_model: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports.json"
    with pytest.raises(SystemExit) as exc:
        run(["report", str(pydicom_file("CT_small.dcm")), "-o", str(out), "--weights", str(tiny_weights), "--strict"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Modality is CT" in err[0], err
    assert not any(tmp_path.iterdir())
