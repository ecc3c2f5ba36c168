"""No input file name or path is ever written into an output (NIfTI descrip, MHA/NRRD/PNG files and
sidecars, DICOM tags); ``--anonymize`` also cleans the free-text descriptors and exists on every
command that writes DICOM; writing identified DICOM says so once."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medm2g_cli.main import run

NAME, MRN, FOLDER = "DOE_JOHN", "4711815", "WARD7_MRN"


def _ct_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def _identified_nifti(tmp_path: Path, who: str = f"{NAME}_{MRN}") -> Path:
    folder = tmp_path / FOLDER
    folder.mkdir(exist_ok=True)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in (24, 24, 8)], indexing="ij")
    data = (np.exp(-(x**2 + y**2) * 3) * 800 + 100 * z + 200).astype(np.float32)
    path = folder / f"{who}.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    return path


def _bytes_under(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    return b"".join(p.read_bytes() + p.name.encode() for p in sorted(path.rglob("*")) if p.is_file())


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        run(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().err


def _no_identity(blob: bytes, *secrets: str) -> None:
    import gzip

    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    for s in secrets:
        assert s.encode() not in blob, s


@pytest.mark.parametrize("out", ["o.nii.gz", "o.nii", "o.mha", "o.nrrd", "o_dicom", "o_png"])
def test_convert_writes_no_file_name_or_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    src = _identified_nifti(tmp_path)
    fmt = {"o_dicom": ["--format", "dicom", "--modality", "mri"], "o_png": ["--format", "png"]}.get(out, [])
    _main(["convert", str(src), str(tmp_path / out), *fmt], capsys)
    _no_identity(_bytes_under(tmp_path / out), NAME, MRN, FOLDER, str(tmp_path))


def test_nifti_descrip_is_provenance_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _identified_nifti(tmp_path)
    _main(["convert", str(src), str(tmp_path / "o.nii.gz")], capsys)
    descrip = nib.load(str(tmp_path / "o.nii.gz")).header["descrip"].tobytes().split(b"\0")[0].decode()
    assert descrip.startswith("converted by medm2g")


def test_register_descrip_has_no_moving_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixed = _identified_nifti(tmp_path, "fixed")
    moving = _identified_nifti(tmp_path, f"SMITH_{MRN}")
    _main(["register", str(fixed), str(moving), "-o", str(tmp_path / "r.nii.gz"), "--iterations", "3"], capsys)
    descrip = nib.load(str(tmp_path / "r.nii.gz")).header["descrip"].tobytes().split(b"\0")[0].decode()
    assert descrip.startswith("registered (rigid")
    _no_identity(_bytes_under(tmp_path / "r.nii.gz"), "SMITH", MRN, FOLDER, str(tmp_path))


def test_dicom_identity_warning_and_clean_descriptors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    src = tmp_path / f"{NAME}_{MRN}.dcm"
    ds = pydicom.dcmread(_ct_small())
    ds.ImageComments = f"patient {NAME}"
    ds.save_as(src)
    err = _main(["convert", str(src), str(tmp_path / "id_dicom"), "--format", "dicom"], capsys)
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "PatientName" in warnings[0] and "--anonymize" in warnings[0], err
    out = pydicom.dcmread(next((tmp_path / "id_dicom").glob("*.dcm")))
    assert str(out.PatientName) == "CompressedSamples^CT1"  # kept without --anonymize, as warned
    for text in (out.SeriesDescription, out.DerivationDescription):
        assert NAME not in text and MRN not in text

    err = _main(["convert", str(src), str(tmp_path / "anon_dicom"), "--format", "dicom", "--anonymize"], capsys)
    assert "warning:" not in err
    out = pydicom.dcmread(next((tmp_path / "anon_dicom").glob("*.dcm")))
    assert out.SeriesDescription == "SYNTHETIC - not for diagnosis"
    assert out.DerivationDescription.startswith("medm2g ") and ":" not in out.DerivationDescription
    assert "ImageComments" not in out
    _no_identity(_bytes_under(tmp_path / "anon_dicom"), NAME, MRN, "CompressedSamples")


def test_clean_descriptors_on_any_dataset() -> None:
    import pydicom

    from medm2g_cli.io.anonymize import anonymize_dataset

    ds = pydicom.dcmread(_ct_small())
    ds.SeriesDescription = f"{NAME} follow-up"
    ds.DerivationDescription = f"converted from {NAME}_{MRN}.nii.gz"
    ds.FrameComments = MRN
    ds.AcquisitionDeviceProcessingDescription = NAME
    anonymize_dataset(ds, salt="t")
    assert ds.SeriesDescription == "DERIVED" and ds.DerivationDescription.startswith("medm2g ")
    assert "FrameComments" not in ds and "AcquisitionDeviceProcessingDescription" not in ds


def test_register_and_synthesize_offer_anonymize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``register`` can write DICOM (into an existing folder): ``--anonymize`` de-identifies it."""
    import pydicom

    series = tmp_path / "series"
    series.mkdir()
    for i in range(5):
        ds = pydicom.dcmread(_ct_small())
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [0, 0, 5.0 * i]
        ds.InstanceNumber = i + 1
        ds.save_as(series / f"s{i}.dcm")
    out = tmp_path / "reg_dicom"
    out.mkdir()
    err = _main(["register", str(series), str(series), "-o", str(out), "--iterations", "2", "--overwrite",
                 "--anonymize"], capsys)
    assert "warning:" not in err
    written = [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"))]
    assert len(written) == 5 and all(str(d.PatientName) == "ANONYMOUS" for d in written)
    _no_identity(_bytes_under(out), "CompressedSamples", str(series))
    shutil.rmtree(out)
    from typer.testing import CliRunner

    from medm2g_cli.main import app

    assert "--anonymize" in CliRunner().invoke(app, ["synthesize", "--help"]).output
