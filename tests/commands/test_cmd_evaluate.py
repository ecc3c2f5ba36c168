"""``medm2g eval``/``evaluate`` end to end: phantom cohorts prepared by the real adapters (plain
phantom layout and the phantom's IXI layout), a tiny random-weight model, table + files; and the
one-line errors of the score-only subcommands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


def _run_fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        run(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("w") / "tiny"
    MedM2G.from_preset("tiny", seed=0, modalities=("text", "mri")).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def phantom_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`medm2g phantom brain` (2 subjects, 2 mm) then `medm2g prepare phantom` with both in the test split."""
    d = tmp_path_factory.mktemp("ph")
    run(["phantom", "brain", "-o", str(d / "raw"), "--subjects", "2", "--layout", "plain", "--resolution", "2"])
    run(["prepare", "phantom", str(d / "raw"), "-o", str(d / "prep"), "--size", "32", "--slices", "4",
         "--option", "split=test"])
    return d / "prep"


@pytest.fixture(scope="module")
def ixi_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom's IXI layout (IXI<id>-<site>-<n>-T1/T2/PD.nii.gz), prepared by the IXI adapter."""
    from medm2g_cli.data.phantom import write_brain_cohort

    d = tmp_path_factory.mktemp("ixi")
    write_brain_cohort(d / "IXI", 2, seed=7, resolution=2, layout="ixi")
    run(["prepare", "ixi", str(d / "IXI"), "-o", str(d / "prep"), "--size", "32", "--slices", "4"])
    return d / "prep"


def test_eval_phantom_prints_table_and_writes_files(phantom_prepared: Path, weights: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res"
    capsys.readouterr()
    run(["eval", "--dataset", "ixi", "--task", "mri-synthesis", "--data", str(phantom_prepared),
         "--weights", str(weights), "-o", str(out), *STEPS])
    err = capsys.readouterr().err
    assert "PSNR (dB)" in err and "SSIM (%)" in err and "this run (N=2)" in err
    assert "CoLa-Diff" in err and "34.12 ± 1.82" in err  # the supplement's IXI rows next to this run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_subjects"] == 2 and summary["n_slices"] == 8 and summary["setting"] == "T2+T1→PD"
    assert summary["protocol"] == "default" and summary["metrics"]["ssim"]["unit"] == "%"
    psnr = summary["metrics"]["psnr"]
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert sorted(r["case"] for r in rows) == sorted({json.loads(x)["subject"] for x in
                                                       (phantom_prepared / "samples.jsonl").read_text().splitlines()})
    vals = [float(r["psnr_db"]) for r in rows]
    assert psnr["mean"] == pytest.approx(np.mean(vals), abs=1e-5) and psnr["std"] == pytest.approx(np.std(vals), abs=1e-5)
    assert "| medm2g | this run (N=2) |" in (out / "results.md").read_text()
    # outputs are never overwritten silently
    err = _run_fail(["eval", "--dataset", "ixi", "--task", "mri-synthesis", "--data", str(phantom_prepared),
                     "--weights", str(weights), "-o", str(out), *STEPS], capsys)
    assert "already exists" in err


def test_eval_ixi_layout_json(ixi_prepared: Path, weights: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads((ixi_prepared / "dataset.json").read_text())
    assert info["name"] == "ixi" and info["splits"]["test"] >= 1
    capsys.readouterr()
    run(["eval", "--dataset", "ixi", "--task", "mri-synthesis", "--data", str(ixi_prepared), "--weights", str(weights),
         "-o", str(tmp_path / "res"), "--json", *STEPS])
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "ixi" and summary["split"] == "test" and summary["n_subjects"] == info["splits"]["test"]
    assert summary["files"] == [str(tmp_path / "res" / n) for n in ("summary.json", "per_case.csv", "results.md")]
    assert np.isfinite(summary["metrics"]["psnr"]["mean"])
    assert any("scaled down" in n for n in summary["notes"])  # 2 subjects, not the paper's 40
    # the train split is scored as well on request; the dataset defaults to the folder's own
    run(["eval", "--task", "mri-synthesis", "--data", str(ixi_prepared), "--weights", str(weights), "--split", "train",
         "--json", *STEPS])
    assert json.loads(capsys.readouterr().out)["dataset"] == "ixi"


def test_eval_errors(phantom_prepared: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_fail(["eval", "--dataset", "iu-xray", "--task", "report-generation", "--data", str(phantom_prepared),
                     "--weights", str(weights)], capsys)
    assert "needs xray + text" in err and "has only:" in err
    err = _run_fail(["eval", "--dataset", "gold-atlas-pelvis", "--task", "mri-ct-translation", "--data",
                     str(phantom_prepared), "--weights", str(weights), *STEPS], capsys)
    assert "no ct branch" in err
    assert "needs --weights" in _run_fail(["eval", "--task", "mri-synthesis", "--data", str(phantom_prepared)], capsys)


def test_evaluate_images_mismatch_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for d, names in (("p", ("a", "c")), ("r", ("a", "b"))):
        (tmp_path / d).mkdir()
        for n in names:
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / d / f"{n}.png")
    err = _run_fail(["evaluate", "images", "--pred", str(tmp_path / "p"), "--ref", str(tmp_path / "r")], capsys)
    assert "2 predictions vs 2 references" in err and "only in predictions: c" in err and "only in references: b" in err


def test_evaluate_fid_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MEDM2G_FID_WEIGHTS", raising=False)
    err = _run_fail(["evaluate", "fid", "--pred", str(tmp_path), "--ref", str(tmp_path)], capsys)
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "pytorch-fid" in err


def test_evaluate_text_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = {"1": "The heart is normal in size. No effusion.", "2": "Lungs are clear. No pneumothorax."}
    preds = {"1": "The heart is normal. No effusion.", "2": "Lungs are clear."}
    for name, d in (("p.jsonl", preds), ("r.jsonl", refs)):
        (tmp_path / name).write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in d.items()))
    capsys.readouterr()
    run(["evaluate", "text", "--pred", str(tmp_path / "p.jsonl"), "--ref", str(tmp_path / "r.jsonl"), "--no-meteor",
         "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["n_reports"] == 2 and 0 < s["metrics"]["BLEU_4"] < s["metrics"]["BLEU_1"] < 1
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "9", "text": "x"}) + "\n")
    err = _run_fail(["evaluate", "text", "--pred", str(tmp_path / "p.jsonl"), "--ref", str(tmp_path / "r.jsonl"),
                     "--no-meteor"], capsys)
    assert "ids only in predictions: 9" in err and "ids only in references: 1, 2" in err


def test_api_score_texts_returns_a_typed_result_and_writes_the_files(tmp_path: Path) -> None:
    from medm2g_cli.api import EvaluateResult, score_texts
    from medm2g_cli.errors import OutputError

    for name, text in (("p.jsonl", "Lungs are clear."), ("r.jsonl", "Lungs are clear. No pneumothorax.")):
        (tmp_path / name).write_text(json.dumps({"id": "1", "text": text}) + "\n")
    out = tmp_path / "res"
    res = score_texts(tmp_path / "p.jsonl", tmp_path / "r.jsonl", meteor=False, out=out)
    assert isinstance(res, EvaluateResult)
    assert sorted(p.name for p in res.files) == ["per_case.csv", "results.md", "summary.json"]
    assert all(p.parent == out and p.is_file() for p in res.files)
    assert json.loads((out / "summary.json").read_text())["metrics"] == res.report.summary["metrics"]
    assert res.to_dict()["files"] == [str(p) for p in res.files]
    with pytest.raises(OutputError):  # an existing result folder is refused without overwrite
        score_texts(tmp_path / "p.jsonl", tmp_path / "r.jsonl", meteor=False, out=out)
