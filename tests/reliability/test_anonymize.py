"""``--anonymize``: DICOM outputs follow the PS3.15 Basic Profile (tested on pydicom's CT_small.dcm), and
run reports never carry a patient's name or ID from a DICOM input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import dicom_series, pydicom_testfile, tree_hash

from medm2g_cli.main import run

PHI = ("CompressedSamples^CT1", "1CT1", "JFK IMAGING CENTER", "CT01_OC0", "19970430", "20040119")


def _strings(ds) -> list[str]:
    out = []
    for elem in ds.iterall():
        if elem.VR not in ("SQ", "OB", "OW", "OF", "UN") and elem.value is not None:
            out.append(str(elem.value))
    return out


def test_basic_profile_on_ct_small() -> None:
    import pydicom

    from medm2g_cli.io.anonymize import anonymize_dataset

    src = pydicom.dcmread(pydicom_testfile("CT_small.dcm"))
    a, b = pydicom.dcmread(pydicom_testfile("CT_small.dcm")), pydicom.dcmread(pydicom_testfile("CT_small.dcm"))
    anonymize_dataset(a, salt="run1")
    anonymize_dataset(b, salt="run1")
    text = " ".join(_strings(a))
    for value in PHI:
        assert value not in text, value
    assert a.PatientIdentityRemoved == "YES" and "PS3.15" in a.DeidentificationMethod
    assert {i.CodeValue for i in a.DeidentificationMethodCodeSequence} == {"113100", "113105"}
    assert a.PatientName == "ANONYMOUS" and a.PatientID == "ANONYMOUS" and a.PatientBirthDate == ""
    assert not any(e.tag.is_private for e in a.iterall())
    assert not any(e.VR in ("DA", "DT", "TM") and e.value for e in a.iterall())
    for kw in ("InstitutionName", "StationName", "PatientAge", "InstanceCreatorUID"):
        assert kw not in a, kw
    # Instance UIDs remapped consistently (same salt, same mapping) and irreversibly; class UIDs kept.
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[kw].value != src[kw].value and a[kw].value == b[kw].value, kw
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == src.SOPClassUID and a.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(a.pixel_array, src.pixel_array)  # pixels untouched
    c = pydicom.dcmread(pydicom_testfile("CT_small.dcm"))
    anonymize_dataset(c, salt="run2")
    assert c.StudyInstanceUID != a.StudyInstanceUID  # unlinkable across runs


def test_convert_anonymize_dicom_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    src = dicom_series(tmp_path / "ct", n=3, edit=lambda ds, i: setattr(ds, "ReferringPhysicianName", "Dr^Who"))
    before = tree_hash(src)
    run(["convert", str(src), str(tmp_path / "plain"), "--format", "dicom"])
    run(["convert", str(src), str(tmp_path / "anon"), "--format", "dicom", "--anonymize"])
    assert tree_hash(src) == before
    plain = [pydicom.dcmread(p) for p in sorted((tmp_path / "plain").glob("*.dcm"))]
    anon = [pydicom.dcmread(p) for p in sorted((tmp_path / "anon").glob("*.dcm"))]
    assert plain[0].PatientName == "CompressedSamples^CT1"  # without the option the study is kept as it is
    source_study = pydicom.dcmread(next(src.iterdir())).StudyInstanceUID
    for ds in anon:
        text = " ".join(_strings(ds))
        for value in (*PHI, "Dr^Who"):
            assert value not in text, value
        assert ds.PatientIdentityRemoved == "YES" and ds.SyntheticData == "YES"
        assert ds.StudyInstanceUID != source_study
    assert len({ds.StudyInstanceUID for ds in anon}) == 1 and len({ds.SeriesInstanceUID for ds in anon}) == 1
    assert len({ds.SOPInstanceUID for ds in anon}) == len(anon)
    for p, a in zip(plain, anon, strict=True):  # geometry and pixels as without --anonymize
        np.testing.assert_array_equal(p.pixel_array, a.pixel_array)
        assert list(p.ImagePositionPatient) == list(a.ImagePositionPatient)
        assert list(p.ImageOrientationPatient) == list(a.ImageOrientationPatient)


def test_translate_anonymize_and_reports_carry_no_identity(tmp_path: Path, rel_weights: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    src = dicom_series(tmp_path / "mr", name="MR_small.dcm", n=3, spacing=2.0)
    ds0 = pydicom.dcmread(next(src.iterdir()))
    name, pid = str(ds0.PatientName), str(ds0.PatientID)
    assert name and pid
    out = tmp_path / "sct"
    run(["translate", "mri2ct", str(src), "-o", str(out), "--weights", str(rel_weights), "--steps", "2",
         "--device", "cpu", "--samples", "2", "--anonymize"])
    cap = capsys.readouterr()
    files = sorted(out.glob("*.dcm")) + sorted((tmp_path / "sct_std").glob("*.dcm"))
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES" and name not in " ".join(_strings(ds))
        assert pid not in (str(ds.PatientID), str(ds.get("OtherPatientIDs", "")))
    # The mean and the std map stay in one (new) study.
    studies = {pydicom.dcmread(f).StudyInstanceUID for f in files}
    assert len(studies) == 1 and ds0.StudyInstanceUID not in studies
    report = (tmp_path / "sct_run.json").read_text()
    json.loads(report)
    for text in (report, cap.out, cap.err):
        assert name not in text and name.replace("^", " ") not in text
        assert pid not in text


def test_anonymized_run_reports_withhold_input_paths(tmp_path: Path, rel_weights: Path) -> None:
    """Exports are often filed under the patient's name: with ``--anonymize`` the run reports of
    translate (single case and batch) and synthesize name no input path, only ``<input N>`` and
    the input's sha256; without it the paths are kept for traceability."""
    folder = tmp_path / "DOE_JANE_4711"
    src = dicom_series(folder / "mr", name="MR_small.dcm", n=3, spacing=2.0)
    common = ["--weights", str(rel_weights), "--steps", "1", "--device", "cpu"]
    run(["translate", "mri2ct", str(src), "-o", str(tmp_path / "kept.nii.gz"), *common])
    run(["translate", "mri2ct", str(src), "-o", str(tmp_path / "anon"), "--format", "dicom", "--anonymize", *common])
    run(["synthesize", "-i", f"t1={src}", "-i", f"t2={src}", "--target", "pd", "-o", str(tmp_path / "pd"),
         "--format", "dicom", "--anonymize", *common])
    kept = (tmp_path / "kept_run.json").read_text()
    assert "DOE_JANE_4711" in kept  # the check below can fail
    for report in (tmp_path / "anon_run.json", tmp_path / "pd_run.json"):
        text = report.read_text()
        assert "DOE_JANE_4711" not in text, report.name
        rep = json.loads(text)
        assert rep["input_paths"].startswith("withheld") and rep["inputs"][0]["path"] == "<input 1>"
        assert rep["inputs"][0]["sha256"] == json.loads(kept)["inputs"][0]["sha256"]
    # A batch (a folder of cases), with an error message that quotes a case's name.
    cases = tmp_path / "SMITH_JOHN_0815"
    cases.mkdir()
    (cases / "ok.nii.gz").write_bytes((tmp_path / "kept.nii.gz").read_bytes())
    (cases / "z_SMITH_bad.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(SystemExit):
        run(["translate", "mri2ct", str(cases), "-o", str(tmp_path / "batch"), "--anonymize", *common])
    text = (tmp_path / "batch" / "run_report.json").read_text()
    assert "SMITH" not in text and "<input" in text
