"""Derived DICOM written by medm2g: CT/MR Image attributes, source references, the Parametric Map,
all checked on real files (pydicom's CT_small / MR_small / CT5N, a phantom series) and with dciodvfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medm2g_cli.io import Volume, read_volume, write_volume
from medm2g_cli.io.dicom_write import SAMPLE_SD_CODE, SYNTHESIS_CODE, case_context
from medm2g_cli.main import run

TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber", "ReferringPhysicianName", "PositionReferenceIndicator", "Laterality")
MR_ATTRS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "EchoTime",
            "RepetitionTime", "EchoTrainLength")


def _files(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")]  # not the .medm2g marker


def _assert_clean(dciodvfy, folder: Path) -> list[str]:
    """dciodvfy on the first and last file of a series: no errors; returns the warnings."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else [folder]
    warnings: list[str] = []
    for f in {files[0], files[-1]}:
        errors, warns = dciodvfy(f)
        assert errors == [], (f.name, errors)
        warnings += warns
    return warnings


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-slice CT series from the built-in brain phantom (32 x 28 in-plane, 2 mm), written by medm2g."""
    from medm2g_cli.data.phantom import generate_brain_subject

    subj = generate_brain_subject(3, resolution=2, tumour=False)
    ct = subj.images["ct"][34:66, 44:72, 40:44]
    aff = subj.affine.copy()
    aff[:3, 3] = subj.affine[:3, :3] @ np.array([34, 44, 40]) + subj.affine[:3, 3]
    return write_volume(Volume(ct, aff, "ct"), tmp_path_factory.mktemp("phantom") / "ct", format="dicom")


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_convert_nifti_to_dicom_is_iod_clean_with_new_study(tmp_path: Path, nib_data: Path, dciodvfy,
                                                           modality: str) -> None:
    out = tmp_path / "dcm"
    run(["convert", str(nib_data / "anatomical.nii"), str(out), "--format", "dicom", "--modality", modality])
    files = _files(out)
    ds = files[0]
    assert ds.SOPClassUID == ("1.2.840.10008.5.1.4.1.1.2" if modality == "ct" else "1.2.840.10008.5.1.4.1.1.4")
    for kw in TYPE2:
        assert kw in ds, kw
    for kw in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyID", "AccessionNumber"):
        assert ds[kw].value in ("", None), kw  # a NIfTI source: nothing invented
    assert ds.SyntheticData == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and len(ds.ImageType) == 4
    if modality == "ct":
        assert "KVP" in ds and "PatientPosition" in ds
    else:
        assert ds.ScanningSequence == "RM" and ds.SequenceVariant == "NONE"
        assert all(kw in ds for kw in MR_ATTRS)
    # no DICOM source: nothing to reference
    assert "SourceImageSequence" not in ds and "ReferencedSeriesSequence" not in ds
    assert len({d.StudyInstanceUID for d in files}) == 1
    _assert_clean(dciodvfy, out)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "CT5N", "phantom"])
def test_derived_series_references_its_source_slices(tmp_path: Path, pydicom_file, ct5n_dir: Path,
                                                     phantom_series: Path, dciodvfy, name: str) -> None:
    src_path = {"CT5N": ct5n_dir, "phantom": phantom_series}.get(name) or pydicom_file(name)
    src = read_volume(src_path)
    sources = {d.SOPInstanceUID: d for d in ([pydicom.dcmread(src_path)] if src_path.is_file() else _files(src_path))}
    out = write_volume(src.with_array(src.array.astype(np.float32) * 0.5 + 3), tmp_path / "syn", format="dicom",
                       source_meta=case_context(src.meta), description="mri2ct; medm2g; weights abc",
                       derivation=SYNTHESIS_CODE)
    outs = _files(out)
    assert len(outs) == len(sources)
    s0 = next(iter(sources.values()))
    seen = set()
    for ds in outs:
        assert ds.StudyInstanceUID == s0.StudyInstanceUID and ds.FrameOfReferenceUID == s0.FrameOfReferenceUID
        assert ds.SeriesInstanceUID != s0.SeriesInstanceUID and ds.SOPInstanceUID not in sources
        assert ds.PatientID == s0.PatientID
        (ref,) = ds.SourceImageSequence
        source = sources[ref.ReferencedSOPInstanceUID]  # a real instance of the source series
        assert ref.ReferencedSOPClassUID == source.SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        # the slice it names is the one at the same place
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient], atol=1e-3)
        (der,) = ds.DerivationImageSequence
        assert der.DerivationCodeSequence[0].CodeValue == SYNTHESIS_CODE[0]
        assert der.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        (series,) = ds.ReferencedSeriesSequence
        assert series.SeriesInstanceUID == s0.SeriesInstanceUID
        assert [r.ReferencedSOPInstanceUID for r in series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
        seen.add(source.SOPInstanceUID)
    assert seen == set(sources)  # every source slice named once
    _assert_clean(dciodvfy, out)


def test_convert_from_dicom_names_source_without_derivation(tmp_path: Path, ct5n_dir: Path, dciodvfy) -> None:
    out = tmp_path / "conv"
    run(["convert", str(ct5n_dir), str(out), "--format", "dicom"])
    sources = {pydicom.dcmread(p).SOPInstanceUID for p in ct5n_dir.iterdir()}
    for ds in _files(out):
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
        assert "DerivationImageSequence" not in ds  # a format conversion, not a model output
    _assert_clean(dciodvfy, out)


def _frame_slices(pm: pydicom.Dataset, vol: Volume) -> list[int]:
    """The volume slice index k of each frame of ``pm``, from its ImagePositionPatient."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine
    ks = []
    for item in pm.PerFrameFunctionalGroupsSequence:
        pos = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        ijk = np.linalg.solve(lps[:3, :3], pos - lps[:3, 3])
        assert np.allclose(ijk[:2], 0, atol=1e-3) and abs(ijk[2] - round(ijk[2])) < 1e-3
        ks.append(int(round(ijk[2])))
    return ks


@pytest.mark.parametrize("name", ["CT5N", "phantom"])
def test_parametric_map_holds_the_std_values_and_references(tmp_path: Path, ct5n_dir: Path, phantom_series: Path,
                                                            dciodvfy, name: str) -> None:
    from medm2g_cli.io.dicom_objects import write_parametric_map

    src_path = ct5n_dir if name == "CT5N" else phantom_series
    src = read_volume(src_path)
    std = np.random.default_rng(0).gamma(2.0, 15.0, src.shape).astype(np.float32)
    out = write_parametric_map(src.with_array(std), tmp_path / "std", source_meta=case_context(src.meta),
                               description="mri2ct; weights abc", model_name="medm2g weights abc", serial="abc")
    (pm,) = _files(out)
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.SyntheticData == "YES"
    assert pm.Rows == src.shape[1] and pm.Columns == src.shape[0] and int(pm.NumberOfFrames) == src.shape[2]
    px = pm.pixel_array
    assert px.dtype == np.float32
    ks = _frame_slices(pm, src)
    assert sorted(ks) == list(range(src.shape[2]))
    for f, k in enumerate(ks):
        np.testing.assert_allclose(px[f], std[:, :, k].T, rtol=0, atol=1e-6)
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "[hnsf'U]"
    assert rwvm.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeMeaning == "Standard Deviation"
    sources = {d.SOPInstanceUID: d for d in _files(src_path)}
    s0 = next(iter(sources.values()))
    assert pm.StudyInstanceUID == s0.StudyInstanceUID and pm.FrameOfReferenceUID == s0.FrameOfReferenceUID
    assert {r.ReferencedSOPInstanceUID for r in pm.SourceImageSequence} == set(sources)
    for item in pm.PerFrameFunctionalGroupsSequence:
        (der,) = item.DerivationImageSequence
        assert der.DerivationCodeSequence[0].CodeValue == SAMPLE_SD_CODE[0]
        ref = sources[der.SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in ref.ImagePositionPatient], atol=1e-3)
    _assert_clean(dciodvfy, out)


def test_parametric_map_without_dicom_source_shares_the_case_study(tmp_path: Path, dciodvfy) -> None:
    from medm2g_cli.io.dicom_objects import write_parametric_map

    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    meta = case_context({"format": "nifti"})
    mean = write_volume(Volume(np.zeros((8, 6, 3), np.float32), aff, "mri"), tmp_path / "mean", format="dicom",
                        source_meta=meta)
    std = np.arange(8 * 6 * 3, dtype=np.float32).reshape(8, 6, 3)
    (pm,) = _files(write_parametric_map(Volume(std, aff, "mri"), tmp_path / "std", source_meta=meta))
    m0 = _files(mean)[0]
    assert pm.StudyInstanceUID == m0.StudyInstanceUID and pm.FrameOfReferenceUID == m0.FrameOfReferenceUID
    assert "SourceImageSequence" not in pm and "ReferencedSeriesSequence" not in pm
    assert all("DerivationImageSequence" not in f for f in pm.PerFrameFunctionalGroupsSequence)
    ks = _frame_slices(pm, Volume(std, aff, "mri"))
    for f, k in enumerate(ks):
        np.testing.assert_array_equal(pm.pixel_array[f], std[:, :, k].T)
    _assert_clean(dciodvfy, tmp_path / "std")


def test_anonymized_parametric_map_stays_valid(tmp_path: Path, ct5n_dir: Path, dciodvfy) -> None:
    """--anonymize on a Parametric Map: identity gone, but the functional groups (group 5200, not a
    curve), the derivation codes and the Type 1 content date/time and device serial stay."""
    from medm2g_cli.io.dicom_objects import write_parametric_map

    src = read_volume(ct5n_dir)
    std = np.full(src.shape, 2.5, np.float32)
    out = write_parametric_map(src.with_array(std), tmp_path / "std", source_meta=case_context(src.meta),
                               serial="abc123", anonymize=True)
    (pm,) = _files(out)
    s0 = _files(ct5n_dir)[0]
    assert pm.PatientIdentityRemoved == "YES" and pm.PatientName == "ANONYMOUS"
    assert str(s0.PatientName) not in str(pm) and pm.StudyInstanceUID != s0.StudyInstanceUID
    assert len(pm.PerFrameFunctionalGroupsSequence) == src.shape[2] and "SharedFunctionalGroupsSequence" in pm
    der = pm.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert der.DerivationCodeSequence[0].CodeValue == SAMPLE_SD_CODE[0]
    assert pm.DeviceSerialNumber == "abc123" and pm.ContentDate
    np.testing.assert_array_equal(pm.pixel_array, 2.5)
    _assert_clean(dciodvfy, out)


def test_convert_picture_to_secondary_capture(tmp_path: Path, pydicom_file, dciodvfy) -> None:
    from PIL import Image

    png = tmp_path / "cxr.png"
    Image.fromarray((np.arange(48 * 40).reshape(48, 40) % 251).astype(np.uint8)).save(png)
    dx = tmp_path / "dx.dcm"
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Modality = "DX"
    ds.save_as(dx)
    for src in (png, dx):
        out = tmp_path / f"{src.stem}_sc.dcm"
        run(["convert", str(src), str(out), "--modality", "xray"])
        sc = pydicom.dcmread(out)
        assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.ConversionType == "SYN"
        assert ("SourceImageSequence" in sc) == (src == dx)
        _assert_clean(dciodvfy, out)


def test_no_source_reference_for_pixels_from_elsewhere(tmp_path: Path, ct5n_dir: Path, pydicom_file,
                                                       nib_data: Path) -> None:
    """A volume written into a DICOM source's study but whose pixels come from another file (what
    ``register`` does with the moving image) must not claim the study's images as its source."""
    fixed = read_volume(ct5n_dir)
    other_series = read_volume(pydicom_file("CT_small.dcm"))
    nifti = read_volume(nib_data / "anatomical.nii", modality="ct")
    for k, vol in enumerate((other_series, nifti)):
        moved = Volume(np.zeros(fixed.shape, np.int16), fixed.affine, "ct", dict(vol.meta))
        out = write_volume(moved, tmp_path / f"m{k}", format="dicom", reference=fixed, source_meta=fixed.meta)
        ds = _files(out)[0]
        assert ds.StudyInstanceUID == fixed.meta["StudyInstanceUID"]  # still filed in the fixed study
        assert "SourceImageSequence" not in ds and "ReferencedSeriesSequence" not in ds
