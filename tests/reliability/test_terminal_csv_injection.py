"""Text from files never drives the terminal or a spreadsheet: header text and file names are not rich
markup (``[/]x`` crashed ``info``), control characters (ANSI escapes, CR, bidi overrides) are shown
escaped on stdout/stderr, and CSV cells that a spreadsheet would run as formulas are neutralised."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rel_helpers import dicom_series, pydicom_testfile

from medm2g_cli.main import run

HOSTILE = "[/]x \x1b[2J\x1b[31mRED\rover\u202eevil[bold]"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        run(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _no_control(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, repr(text)


def test_info_shows_hostile_series_description_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    ds = pydicom.dcmread(pydicom_testfile("CT_small.dcm"))
    ds.SeriesDescription = "[/]x"
    ds.save_as(tmp_path / "ct.dcm")
    code, out, err = _run(["info", str(tmp_path / "ct.dcm")], capsys)
    assert code == 0, err
    assert "[/]x" in err and "unexpected" not in err

    ds.SeriesDescription = HOSTILE
    ds.save_as(tmp_path / "ct2.dcm")
    code, out, err = _run(["info", str(tmp_path / "ct2.dcm")], capsys)
    assert code == 0, err
    _no_control(out + err)
    assert "\\x1b[2J" in err and "[bold]" in err  # shown, escaped, not interpreted


def test_info_series_table_and_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "[red]study\x1b[5m"
    dicom_series(folder, edit=lambda ds, i: setattr(ds, "SeriesDescription", HOSTILE))
    dicom_series(folder, edit=lambda ds, i: setattr(ds, "SeriesDescription", "[/]"))
    code, out, err = _run(["info", str(folder)], capsys)
    assert code == 0, err
    _no_control(out + err)
    assert "[red]study\\x1b[5m" in "".join(err.split()) and "[/]" in err  # the title may wrap


def test_error_line_escapes_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["info", str(tmp_path / "gone\x1b]0;pwned\x07.nii.gz")], capsys)
    assert code == 2
    _no_control(out + err)
    assert "\x07" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: input") and "\\x1b]0;pwned\\x07" in lines[0]
    # Header text quoted in an error (two series whose descriptions are listed).
    folder = tmp_path / "two"
    dicom_series(folder, edit=lambda ds, i: setattr(ds, "SeriesDescription", HOSTILE))
    dicom_series(folder, edit=lambda ds, i: setattr(ds, "SeriesDescription", "plain"))
    code, out, err = _run(["convert", str(folder), str(tmp_path / "o.nii.gz")], capsys)
    assert code == 2 and "2 series" in err
    _no_control(out + err)


def test_convert_output_name_is_not_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["convert", str(pydicom_testfile("CT_small.dcm")), str(tmp_path / "[bold]o.nii.gz")], capsys)
    assert code == 0, err
    assert "[bold]o.nii.gz" in "".join(err.split())  # printed, not swallowed as a style tag


def test_csv_cells_are_not_formulas(tmp_path: Path) -> None:
    from medm2g_cli.metrics.tables import csv_text, write_results
    from medm2g_cli.safetext import csv_cell

    rows = [{"case": "=HYPERLINK(\"http://x\",\"y\")", "psnr_db": 21.5}, {"case": "+1", "psnr_db": -3.0},
            {"case": "-2+3", "psnr_db": 1.0}, {"case": "@SUM(A1)", "psnr_db": 2.0},
            {"case": "\tcmd", "psnr_db": 0.0}, {"case": "\rcmd", "psnr_db": 0.0}, {"case": "P001", "psnr_db": 5.0}]
    write_results(tmp_path / "res", {"n": 7}, rows, "# r\n")
    with open(tmp_path / "res" / "per_case.csv", newline="", encoding="utf-8") as fh:
        text = fh.read()
    assert text == csv_text(rows)
    cells = [r["case"] for r in csv.DictReader(io.StringIO(text))]
    assert cells[:4] == ["'" + r["case"] for r in rows[:4]] and cells[6] == "P001"
    assert cells[4:6] == ["'\\x09cmd", "'\\x0dcmd"]  # prefixed, and no raw control character in the file
    assert [r["psnr_db"] for r in csv.DictReader(io.StringIO(text))][1] == "-3.0"  # numbers stay numbers
    assert csv_cell(-3.0) == -3.0 and csv_cell("x=1") == "x=1"
