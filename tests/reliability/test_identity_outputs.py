"""Commands that write DICOM from a DICOM source: ``synthesize --anonymize`` de-identifies (the option
exists there now), and identified output is announced by exactly one ``warning:`` line per run,
however many DICOM series it writes (mean and std map)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rel_helpers import dicom_series

from medm2g_cli.main import run


def _synth(src: Path, out: Path, weights: Path, *extra: str) -> None:
    run(["synthesize", "-i", f"t1={src}", "-i", f"t2={src}", "--target", "pd", "-o", str(out),
         "--weights", str(weights), "--steps", "2", "--device", "cpu", "--samples", "2", *extra])


def test_synthesize_anonymize_and_one_identity_warning(tmp_path: Path, rel_weights: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    src = dicom_series(tmp_path / "mr", name="MR_small.dcm", n=3, spacing=2.0)
    name = str(pydicom.dcmread(next(src.iterdir())).PatientName)
    _synth(src, tmp_path / "pd_id", rel_weights)
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:") and "PatientName" in ln]
    assert len(warnings) == 1, err  # two identified series written (mean, std): one line
    assert str(pydicom.dcmread(next((tmp_path / "pd_id").glob("*.dcm"))).PatientName) == name

    _synth(src, tmp_path / "pd_anon", rel_weights, "--anonymize")
    err = capsys.readouterr().err
    assert "PatientName" not in err
    files = sorted((tmp_path / "pd_anon").glob("*.dcm")) + sorted((tmp_path / "pd_anon_std").glob("*.dcm"))
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == "ANONYMOUS"
        assert name.encode() not in f.read_bytes()
