"""``medm2g generate xray+report``: X-rays and their reports generated together (tiny random-weight
model, 2 steps): files, reproducibility, one-line errors before any model work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import sha256

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]
PROMPT = "Cardiomegaly. Small left pleural effusion."


def _gen(out: Path, weights: Path, *extra: str) -> None:
    run(["generate", "xray+report", "--prompt", PROMPT, "-n", "2", "-o", str(out), "--weights", str(weights),
         *STEPS, *extra])


def test_pairs_written_and_reproducible(tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    out = tmp_path / "pairs"
    _gen(out, tiny_weights)
    reps = json.loads((out / "reports.json").read_text())
    assert reps["prompt"] == PROMPT and reps["synthetic"] and len(reps["pairs"]) == 2
    for pair in reps["pairs"]:
        img = np.asarray(Image.open(out / pair["image"]))
        assert img.dtype == np.uint8 and img.shape == (32, 32)
        assert (out / pair["report_file"]).read_text(encoding="utf-8") == pair["report"] + "\n"
    side = json.loads((out / "generate.json").read_text())
    assert side["target"] == "xray+report" and side["num"] == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["xray_000.png", "xray_000.txt", "xray_001.png", "xray_001.txt", "reports.json", "contact_sheet.png",
         "generate.json", "run_report.json"])
    # same seed: byte-identical images and text; another seed: other images
    again, other = tmp_path / "again", tmp_path / "other"
    _gen(again, tiny_weights)
    _gen(other, tiny_weights, "--seed", "1")
    for f in ("xray_000.png", "xray_001.png", "xray_000.txt", "xray_001.txt", "reports.json", "generate.json"):
        assert sha256(out / f) == sha256(again / f), f
    assert sha256(out / "xray_000.png") != sha256(other / "xray_000.png")


def test_dicom_format_writes_secondary_capture(tmp_path: Path, tiny_weights: Path) -> None:
    import pydicom

    out = tmp_path / "dcm"
    run(["generate", "xray+report", "--prompt", PROMPT, "-o", str(out), "--format", "dicom",
         "--weights", str(tiny_weights), *STEPS])
    ds = pydicom.dcmread(out / "xray_000.dcm")
    assert ds.SOPClassUID.name.startswith("Secondary Capture") and ds.SyntheticData == "YES"
    assert (out / "xray_000.txt").read_text(encoding="utf-8").strip() == \
        json.loads((out / "reports.json").read_text())["pairs"][0]["report"].strip()


@pytest.mark.parametrize(("args", "needle"), [
    (["--prompt", "   "], "the prompt is empty"),
    (["--prompt", PROMPT, "-n", "0"], "-n 0 is not positive"),
    (["--prompt", PROMPT, "--format", "gif"], "unknown image format"),
    (["--prompt", PROMPT, "--decoding", "sampling"], "unknown decoding"),
])
def test_bad_input_is_one_line(args: list[str], needle: str, tmp_path: Path, tiny_weights: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["generate", "xray+report", *args, "-o", str(tmp_path / "o"), "--weights", str(tiny_weights), *STEPS])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not list(tmp_path.iterdir())


def test_unknown_image_target(tmp_path: Path, tiny_weights: Path) -> None:
    from medm2g_cli.api import generate_image_report
    from medm2g_cli.errors import ConfigError
    from medm2g_cli.inference.runtime import InferenceSettings

    with pytest.raises(ConfigError, match="cannot generate 'ct' together with a report"):
        generate_image_report(PROMPT, tmp_path / "o", image="ct", settings=InferenceSettings(weights=tiny_weights))
    assert not list(tmp_path.iterdir())
