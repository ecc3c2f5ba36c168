"""DICOM outputs of the inference commands, end to end with the tiny model: translated CT/MR series
referencing their source, the K-sample std as a Parametric Map, generated images as Secondary
Capture, ``report -o X.dcm`` as a Comprehensive SR; every kind read back with pydicom and dciodvfy-clean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from infer_helpers import dicom_series

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def mr_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dicom_series(tmp_path_factory.mktemp("dcm") / "mr", "MR_small.dcm", n=3)


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dicom_series(tmp_path_factory.mktemp("dcm") / "ct", "CT_small.dcm", n=3, spacing=5.0)


def _files(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")]  # not the .medm2g marker


def _clean(dciodvfy, path: Path) -> None:
    errors, _ = dciodvfy(path)
    assert errors == [], (path.name, errors)


def test_translate_mri2ct_series_and_std_parametric_map(tmp_path: Path, mr_series: Path, tiny_weights: Path,
                                                       dciodvfy) -> None:
    from medm2g_cli.io import read_volume

    out = tmp_path / "sct"
    args = ["--weights", str(tiny_weights), "--samples", "2", "--seed", "3", *STEPS]
    run(["translate", "mri2ct", str(mr_series), "-o", str(out), *args])
    run(["translate", "mri2ct", str(mr_series), "-o", str(tmp_path / "sct.nii.gz"), *args])
    sources = {d.SOPInstanceUID: d for d in _files(mr_series)}
    s0 = next(iter(sources.values()))
    mean = _files(out)
    for ds in mean:
        assert ds.Modality == "CT" and ds.StudyInstanceUID == s0.StudyInstanceUID
        assert ds.FrameOfReferenceUID == s0.FrameOfReferenceUID and ds.SyntheticData == "YES"
        der = ds.DerivationImageSequence[0]
        assert der.DerivationCodeSequence[0].CodingSchemeDesignator == "99MEDM2G"
        assert "weights" in der.DerivationDescription  # provenance: model and weights hash
        assert der.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
    assert {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in mean} == set(sources)
    _clean(dciodvfy, sorted(out.glob("*.dcm"))[0])
    (pm,) = _files(tmp_path / "sct_std")
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.SyntheticData == "YES"
    assert pm.StudyInstanceUID == s0.StudyInstanceUID and pm.FrameOfReferenceUID == s0.FrameOfReferenceUID
    assert pm.SeriesInstanceUID != mean[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in pm.SourceImageSequence} == set(sources)
    # the frames hold the std map (the same seed's NIfTI output), frame by frame at its position
    std = read_volume(tmp_path / "sct_std.nii.gz")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ std.affine
    for f, item in enumerate(pm.PerFrameFunctionalGroupsSequence):
        pos = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(round(np.linalg.solve(lps[:3, :3], pos - lps[:3, 3])[2]))
        np.testing.assert_allclose(pm.pixel_array[f], np.asarray(std.array)[:, :, k].T, rtol=1e-5, atol=1e-3)
        ref = sources[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose([float(v) for v in ref.ImagePositionPatient], pos, atol=1e-3)
    assert float(np.max(pm.pixel_array)) > 0
    _clean(dciodvfy, sorted((tmp_path / "sct_std").glob("*.dcm"))[0])


def test_translate_ct2mri_series_is_mr_image(tmp_path: Path, ct_series: Path, tiny_weights: Path, dciodvfy) -> None:
    out = tmp_path / "smr"
    run(["translate", "ct2mri", str(ct_series), "-o", str(out), "--weights", str(tiny_weights), *STEPS])
    sources = {d.SOPInstanceUID for d in _files(ct_series)}
    for ds in _files(out):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.ScanningSequence == "RM"
        assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID in sources
    _clean(dciodvfy, sorted(out.glob("*.dcm"))[-1])


def test_generate_xray_secondary_capture(tmp_path: Path, tiny_weights: Path, dciodvfy) -> None:
    out = tmp_path / "gen"
    run(["generate", "xray", "--prompt", "No acute cardiopulmonary process.", "-n", "2", "-o", str(out),
         "--format", "dicom", "--weights", str(tiny_weights), *STEPS])
    files = sorted(out.glob("*.dcm"))
    sc = [pydicom.dcmread(f) for f in files]
    assert len(sc) == 2
    assert len({d.StudyInstanceUID for d in sc}) == 1 and len({d.SeriesInstanceUID for d in sc}) == 1
    for ds in sc:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.SyntheticData == "YES"
        assert ds.ConversionType == "SYN" and ds.ManufacturerModelName.startswith("medm2g weights ")
        assert list(ds.PatientOrientation) == ["L", "F"] and ds.pixel_array.dtype == np.uint8
    assert [int(d.InstanceNumber) for d in sc] == [1, 2]
    for f in files:
        _clean(dciodvfy, f)


def _text_items(ds: pydicom.Dataset, code: str) -> list[pydicom.Dataset]:
    out = []
    for item in ds.get("ContentSequence", []):
        if item.ConceptNameCodeSequence[0].CodeValue == code:
            out.append(item)
        out += _text_items(item, code)
    return out


def test_report_dicom_sr_in_the_xray_study(tmp_path: Path, pydicom_file, tiny_weights: Path, dciodvfy,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from medm2g_cli.io.dicom_objects import ut_text

    cxr = tmp_path / "cxr.dcm"
    src = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    src.Modality = "DX"
    src.save_as(cxr)
    out = tmp_path / "report.dcm"
    capsys.readouterr()
    run(["report", str(cxr), "-o", str(out), "--json", "--weights", str(tiny_weights), *STEPS])
    text = json.loads(capsys.readouterr().out)["reports"][0]["report"]
    sr = pydicom.dcmread(out)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.Modality == "SR" and sr.SyntheticData == "YES"
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == src.PatientID
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    (finding,) = _text_items(sr, "121071")
    assert finding.TextValue == (ut_text(text).strip() or "(the model generated no text)")
    (image,) = _text_items(finding, "121324")
    assert image.RelationshipType == "INFERRED FROM"
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # observed by a device: the model, named by its weights hash; the text says it is generated
    assert _text_items(sr, "121005")[0].ConceptCodeSequence[0].CodeMeaning == "Device"
    assert _text_items(sr, "121015")[0].TextValue.startswith("medm2g weights ")
    assert "synthetic" in _text_items(sr, "121106")[0].TextValue
    assert sr.VerificationFlag == "UNVERIFIED"
    assert "cxr" not in str(sr)  # no input file name in the header
    assert json.loads((tmp_path / "report_run.json").read_text())["outputs"][0]["path"] == str(out)
    _clean(dciodvfy, out)


def test_report_sr_from_png_and_refusals(tmp_path: Path, tiny_weights: Path, dciodvfy,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    png = tmp_path / "cxr.png"
    yy, xx = np.mgrid[:48, :48]
    Image.fromarray(((np.sin(xx / 5.0) + np.cos(yy / 7.0) + 2) * 60).astype(np.uint8)).save(png)
    out = tmp_path / "r.dcm"
    run(["report", str(png), "-o", str(out), "--weights", str(tiny_weights), *STEPS])
    sr = pydicom.dcmread(out)
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr  # nothing DICOM to reference
    assert _text_items(sr, "121071") and not _text_items(sr, "121324")
    _clean(dciodvfy, out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # one SR per image
        run(["report", str(png), str(png), "-o", str(tmp_path / "two.dcm"), "--weights", str(tiny_weights)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one DICOM SR" in err[0]
    assert not (tmp_path / "two.dcm").exists()
