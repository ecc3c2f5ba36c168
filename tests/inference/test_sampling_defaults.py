"""A model's recommended sampler settings (``sampling`` in medm2g.json, issue 20): used when no flag
is given, overridden by flags, recorded with their origin in the run report; ``weights verify`` keeps
passing; a bad block is a one-line error before any model work (tiny random-weight model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.main import run

BLOCK = {"note": "test", "guidance": 1.5,
         "branches": {"ct": {"sampler": "dpm++", "steps": 3, "spacing": "karras", "guidance_stop": 0.5}}}


def _with_block(src: Path, dst: Path, block: object) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "medm2g.json").read_text())
    meta["sampling"] = block
    (dst / "medm2g.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dst


@pytest.fixture(scope="module")
def weights(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_block(tiny_weights, tmp_path_factory.mktemp("w") / "tiny-sampling", BLOCK)


@pytest.fixture(scope="module")
def t1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(0)
    arr = (rng.uniform(0, 1, (16, 16, 2)) * 800).astype(np.float32)
    path = tmp_path_factory.mktemp("in") / "t1.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    return path


def _settings(t1: Path, out: Path, weights: Path, *flags: str) -> dict:
    run(["translate", "mri2ct", str(t1), "-o", str(out), "--weights", str(weights), "--device", "cpu", *flags])
    return json.loads((out.parent / (out.name.split(".")[0] + "_run.json")).read_text())["settings"]


def test_verify_still_passes_with_a_sampling_block(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["weights", "verify", str(weights)])  # exit 0: medm2g.json is not in its own hash list
    assert "error" not in capsys.readouterr().err


def test_model_settings_used_without_flags(tmp_path: Path, t1: Path, weights: Path) -> None:
    s = _settings(t1, tmp_path / "a.nii.gz", weights)
    assert (s["sampler"], s["steps"], s["spacing"], s["guidance_stop"], s["guidance"]) == ("dpm++", 3, "karras", 0.5, 1.5)
    assert s["sampling_source"] == {"sampler": "model", "steps": "model", "eta": "preset", "guidance": "model",
                                    "guidance_stop": "model", "spacing": "model"}


def test_flags_win_and_naming_a_sampler_opts_out(tmp_path: Path, t1: Path, weights: Path) -> None:
    s = _settings(t1, tmp_path / "b.nii.gz", weights, "--steps", "2", "--guidance-stop", "1")
    assert (s["sampler"], s["steps"], s["guidance_stop"], s["spacing"]) == ("dpm++", 2, 1.0, "karras")
    assert s["sampling_source"]["steps"] == "flag" and s["sampling_source"]["guidance_stop"] == "flag"
    assert s["sampling_source"]["sampler"] == "model"
    # --sampler ddim --steps 2 --eta 1: Table A3 for everything not given (guidance 2, guided throughout)
    s = _settings(t1, tmp_path / "c.nii.gz", weights, "--sampler", "ddim", "--steps", "2", "--eta", "1")
    assert (s["sampler"], s["steps"], s["eta"], s["guidance"], s["guidance_stop"], s["spacing"]) == \
        ("ddim", 2, 1.0, 2.0, 1.0, None)
    assert s["sampling_source"] == {"sampler": "flag", "steps": "flag", "eta": "flag", "guidance": "preset",
                                    "guidance_stop": "preset", "spacing": "preset"}


def test_block_applies_per_branch(weights: Path) -> None:
    from medm2g_cli.inference.sampling import model_sampling

    meta = json.loads((weights / "medm2g.json").read_text())
    assert model_sampling(meta, target="ct")["steps"] == 3
    assert model_sampling(meta, target="t2") == {"guidance": 1.5}  # only the top of the block
    assert model_sampling({}, target="ct") == {}


@pytest.mark.parametrize("block", [
    {"branches": {"ct": {"steps": 0}}},  # out of range
    {"branches": {"mri": {"sampler": "euler"}}},  # unknown sampler, even for a branch not in use
    {"stepz": 10},  # unknown key
    {"steps": "ten"},  # wrong type
    ["dpm++"],  # not a mapping
])
def test_bad_block_is_one_line_error_before_model(block: object, tmp_path: Path, t1: Path, tiny_weights: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("medm2g_cli.api.session.load_model", boom)
    w = _with_block(tiny_weights, tmp_path / "w", block)
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(t1), "-o", str(tmp_path / "o.nii.gz"), "--weights", str(w)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "sampling" in err[0], err
    assert not (tmp_path / "o.nii.gz").exists()


def test_precision_auto_and_fp32_recorded_and_fp32_is_all_fp32(tmp_path: Path, t1: Path, weights: Path) -> None:
    """No --precision: ``auto`` (autoencoders in bf16 where the CPU computes bf16, issue 20), recorded
    as resolved on this machine; ``--precision fp32`` keeps every part fp32, so outputs differ
    exactly when auto cast."""
    import nibabel as nib

    from medm2g_cli.inference.runtime import cpu_computes_bf16

    auto = _settings(t1, tmp_path / "auto.nii.gz", weights)
    fp32 = _settings(t1, tmp_path / "fp32.nii.gz", weights, "--precision", "fp32")
    cast = cpu_computes_bf16()
    assert (auto["precision"], auto["autoencoder_precision"]) == ("auto", "bf16" if cast else "fp32")
    assert (fp32["precision"], fp32["autoencoder_precision"]) == ("fp32", "fp32")
    a, b = (np.asarray(nib.load(str(tmp_path / f"{n}.nii.gz")).dataobj) for n in ("auto", "fp32"))
    assert np.array_equal(a, b) is not cast
