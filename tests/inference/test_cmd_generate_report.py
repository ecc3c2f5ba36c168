"""``medm2g generate`` (PNG / synthetic DICOM, contact sheet, sidecar) and ``medm2g report``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


def test_generate_xray_png_and_alias(tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    out = tmp_path / "cxr"
    run(["generate", "xray", "--prompt", "Cardiomegaly. Small left effusion.", "-n", "3", "-o", str(out),
         "--weights", str(tiny_weights), *STEPS])
    side = json.loads((out / "generate.json").read_text())
    assert side["prompt"] == "Cardiomegaly. Small left effusion." and side["num"] == 3 and side["synthetic"]
    imgs = [np.asarray(Image.open(out / f)) for f in side["files"]]
    assert len(imgs) == 3 and all(i.dtype == np.uint8 and i.shape == (32, 32) for i in imgs)
    assert not np.array_equal(imgs[0], imgs[1])  # different samples
    assert Image.open(out / "contact_sheet.png").size[0] > 32
    assert json.loads((out / "run_report.json").read_text())["outputs"][0]["sha256"]
    out2 = tmp_path / "cxr2"
    run(["generate-xray", "--prompt", "Cardiomegaly. Small left effusion.", "-n", "3", "-o", str(out2),
         "--weights", str(tiny_weights), *STEPS])
    assert np.array_equal(np.asarray(Image.open(out2 / "xray_000.png")), imgs[0])  # same seed, same image


def test_generate_ct_dicom_secondary_capture(tmp_path: Path, tiny_weights: Path) -> None:
    import pydicom

    out = tmp_path / "ct"
    run(["generate", "ct", "--prompt", "axial head ct, no haemorrhage", "-n", "2", "-o", str(out), "--format",
         "dicom", "--weights", str(tiny_weights), *STEPS])
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.SyntheticData == "YES"
    assert ds.ConversionType == "SYN" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.pixel_array.dtype == np.uint16
    assert (out / "contact_sheet.png").exists()


def test_generate_errors(tmp_path: Path, tiny_weights: Path, text_xray_weights: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    cases = (
        (["generate", "xray", "--prompt", "   ", "-o", str(tmp_path / "a"), "--weights", str(tiny_weights)], "empty"),
        (["generate", "ct", "--prompt", "x", "-o", str(tmp_path / "b"), "--weights", str(text_xray_weights)],
         "no ct branch"),
        (["generate", "xray", "--prompt", "x", "-o", str(tmp_path / "c"), "--weights", str(tmp_path / "none")],
         "make weights"),
    )
    for args, needle in cases:
        with pytest.raises(SystemExit) as exc:
            run(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not list(tmp_path.iterdir())


def test_long_prompt_truncated_with_warning(tmp_path: Path, tiny_weights: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "long"
    run(["generate", "xray", "--prompt", " ".join(["pleural effusion"] * 80), "-o", str(out),
         "--weights", str(tiny_weights), *STEPS])
    assert "only the first" in capsys.readouterr().err
    assert json.loads((out / "generate.json").read_text())["prompt_truncated"] is True


def test_report_png_and_dicom(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom
    from PIL import Image
    from pydicom.data import get_testdata_file

    png = tmp_path / "cxr.png"
    yy, xx = np.mgrid[:64, :48]
    Image.fromarray(((np.sin(xx / 5.0) + np.cos(yy / 7.0) + 2) * 60).astype(np.uint8)).save(png)
    rgb = tmp_path / "cxr_rgb.jpg"
    Image.open(png).convert("RGB").save(rgb)
    dcm = tmp_path / "cxr.dcm"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Modality = "DX"
    ds.save_as(dcm)
    capsys.readouterr()
    run(["report", str(png), str(rgb), str(dcm), "--json", "--weights", str(tiny_weights), "--decoding", "beam",
         "--num-beams", "2", *STEPS])
    data = json.loads(capsys.readouterr().out)
    assert [Path(r["image"]).name for r in data["reports"]] == ["cxr.png", "cxr_rgb.jpg", "cxr.dcm"]
    assert all(isinstance(r["report"], str) for r in data["reports"]) and data["decoding"] == "beam"
    out = tmp_path / "reports.json"
    run(["report", str(png), "-o", str(out), "--weights", str(tiny_weights), *STEPS])
    assert isinstance(json.loads(out.read_text())["reports"][0]["report"], str)
    run_rep = json.loads((tmp_path / "reports_run.json").read_text())
    assert run_rep["inputs"][0]["sha256"] and run_rep["outputs"][0]["path"] == str(out)
    with pytest.raises(SystemExit) as exc:
        run(["report", str(tmp_path / "missing.png"), "--weights", str(tiny_weights)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # existing -o without --overwrite
        run(["report", str(png), "-o", str(out), "--weights", str(tiny_weights)])
    assert exc.value.code == 2
