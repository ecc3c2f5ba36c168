"""The applicability guard's latent distance check (:mod:`medm2g_cli.inference.latent_check`):
``medm2g weights calibrate`` on prepared phantom data writes a reproducible reference that
``weights verify`` accepts; phantom T1s of held-out subjects pass, a real scan that is not a brain
T1 (pydicom's abdominal MR) warns with the latent reason and ``--strict`` refuses it before any
sampling; without the file the check is listed in ``not_checked``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import dicom_series

from medm2g_cli.io.volume import Volume
from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


def _ok(args: list[str]) -> None:
    try:
        run(args)
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phantom subjects (all contrasts and CT, 2 mm) prepared at 128 px, all in the train split.
    At 128 px a 2 mm slice is only padded, as translation pads it (no resampling on either side)."""
    from medm2g_cli.data.phantom.layouts import write_brain_cohort

    root = tmp_path_factory.mktemp("latref")
    write_brain_cohort(root / "raw", 2, seed=1, layout="plain")
    _ok(["prepare", "phantom", str(root / "raw"), "-o", str(root / "prep"), "--size", "128", "--slices", "95",
         "--option", "split=train"])
    return root / "prep"


@pytest.fixture(scope="module")
def brain_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random brain model (CT and MRI branches) at the demo model's 128 px."""
    import torch

    from medm2g_cli.config import model_preset
    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("weights") / "tiny128"
    cfg = model_preset("tiny", modalities=("ct", "mri"), **{"image.image_size": 128})
    MedM2G.from_config(cfg, seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, brain_weights: Path, prepared: Path) -> Path:
    """A copy of the tiny model folder with its latent reference."""
    path = tmp_path_factory.mktemp("cal") / "tiny128"
    shutil.copytree(brain_weights, path)
    _ok(["weights", "calibrate", str(path), "--data", str(prepared), "--max-slices", "80"])
    return path


def _nifti(prepared: Path, contrast: str, subject: str = "sub-001") -> Volume:
    from medm2g_cli.io import read_volume

    return read_volume(prepared.parent / "raw" / subject / f"{contrast}.nii.gz")


def _assess(weights: Path, vol: Volume, name: str = "mri"):  # noqa: ANN202
    from medm2g_cli.inference.applicability import assess_input
    from medm2g_cli.inference.latent_check import assess_latents, load_reference
    from medm2g_cli.inference.runtime import load_model

    res = assess_input(vol, name, image_size=128)
    ref = load_reference(weights)
    assert ref is not None
    assess_latents(res, load_model(weights, "cpu"), ref, [(name, vol)])
    return res


def test_calibrate_writes_a_verified_reproducible_reference(calibrated: Path, prepared: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    ref_path = calibrated / "latent_reference.json"
    ref = json.loads(ref_path.read_text())
    assert sorted(ref["keys"]) == ["ct", "flair", "pd", "t1", "t1ce", "t2"]
    t1 = ref["keys"]["t1"]
    assert t1["slices"] == 80 and t1["dim"] == 4 * 9  # --max-slices; tiny: 4 latent channels
    assert 0 < t1["percentiles"]["50"] < t1["percentiles"]["99"]
    meta = json.loads((calibrated / "medm2g.json").read_text())
    assert "latent_reference.json" in meta["sha256"]
    _ok(["weights", "verify", str(calibrated)])  # the new file is recorded, not "unexpected"
    first = ref_path.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # an existing reference is kept without --overwrite
        run(["weights", "calibrate", str(calibrated), "--data", str(prepared), "--max-slices", "80"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0], err
    _ok(["weights", "calibrate", str(calibrated), "--data", str(prepared), "--max-slices", "80", "--overwrite"])
    assert ref_path.read_bytes() == first  # same model and data -> same bytes
    _ok(["weights", "verify", str(calibrated)])


def test_training_t1_passes_the_latent_check(calibrated: Path, prepared: Path) -> None:
    # the training subjects' own T1s, read from their NIfTI files and prepared by the inference
    # pipeline: inside the reference (fails if inference prepares slices unlike training)
    for sub in ("sub-001", "sub-002"):
        res = _assess(calibrated, _nifti(prepared, "t1", sub))
        assert 0 < res.deviations["latent_distance"] <= 1.0, res.stats
        assert not any(r.startswith("latents:") for r in res.reasons)
        assert res.not_checked == []


def test_real_abdominal_mr_warns_on_its_latents(calibrated: Path, tmp_path: Path) -> None:
    from medm2g_cli.io import read_volume

    abdomen = read_volume(dicom_series(tmp_path / "abd", "examples_overlay.dcm", n=8, spacing=4.0))
    res = _assess(calibrated, abdomen)
    assert res.deviations["latent_distance"] > 1.0, res.stats
    assert any(r.startswith("latents:") and "T1" in r for r in res.reasons), res.reasons


def test_translate_records_the_check_and_strict_refuses_before_sampling(
        calibrated: Path, brain_weights: Path, prepared: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    t1 = _nifti(prepared, "t1")
    slab = tmp_path / "t1.nii.gz"  # a few slices keep the run short (the input checks warn on its field of view)
    nib.save(nib.Nifti1Image(np.asarray(t1.array)[:, :, 40:44], t1.affine), str(slab))
    # without the reference: listed in not_checked, no latent check
    _ok(["translate", "mri2ct", str(slab), "-o", str(tmp_path / "a.nii.gz"), "--weights", str(brain_weights), *STEPS])
    case = json.loads((tmp_path / "a_run.json").read_text())["cases"][0]["applicability"]
    assert "latent_distance" not in case["checks"]
    assert [n for n in case["not_checked"] if n.startswith("latent distance")], case
    # with it: checked before sampling, recorded, inside the reference
    _ok(["translate", "mri2ct", str(slab), "-o", str(tmp_path / "b.nii.gz"), "--weights", str(calibrated), *STEPS])
    case = json.loads((tmp_path / "b_run.json").read_text())["cases"][0]["applicability"]
    assert 0 < case["checks"]["latent_distance"] <= 1.0 and case["not_checked"] == [], case
    assert case["stats"]["latent_slices"] == 4
    # a PD given where a T1 is expected passes every input check (it is not T2-like) but not the latent
    # one: --strict refuses it once the model is loaded, before any sampling or output
    odd = prepared.parent / "raw" / "sub-001" / "pd.nii.gz"
    err = _strict_refusal(odd, tmp_path / "c.nii.gz", calibrated, monkeypatch, capsys)
    assert "latents:" in err
    assert not list(tmp_path.glob("c*"))


def _strict_refusal(inp: Path, out: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> str:
    """``translate mri2ct INP -o OUT --strict`` with sampling forbidden: its exit code 2 and one error line."""

    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("sampling started")

    monkeypatch.setattr("medm2g_cli.engine.generate", no_sampling)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(inp), "-o", str(out), "--weights", str(weights), "--strict", *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_strict_batch_refuses_on_latents_before_writing_any_case(
        calibrated: Path, prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of cases with --strict: the second case (a PD where a T1 is expected) passes the input
    checks and fails only the latent one. Nothing is sampled and nothing is written, not even the
    first, in-domain case."""
    raw = prepared.parent / "raw" / "sub-001"
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copyfile(raw / "t1.nii.gz", cases / "a_t1.nii.gz")
    shutil.copyfile(raw / "pd.nii.gz", cases / "b_pd.nii.gz")
    err = _strict_refusal(cases, tmp_path / "out", calibrated, monkeypatch, capsys)
    assert "b_pd" in err and "latents:" in err
    assert not (tmp_path / "out").exists()
