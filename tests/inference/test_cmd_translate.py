"""``medm2g translate``: geometry on the input grid, synthetic DICOM, determinism, uncertainty,
batch/resume, and one-line errors before any model work (tiny random-weight model, 2 steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import dicom_series, oblique_nifti, sha256

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def nifti_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    return oblique_nifti(tmp_path_factory.mktemp("nii") / "t1_oblique.nii.gz")


@pytest.fixture(scope="module")
def mr_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dicom_series(tmp_path_factory.mktemp("dcm") / "mr", "MR_small.dcm", n=5)


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dicom_series(tmp_path_factory.mktemp("dcm") / "ct", "CT_small.dcm", n=3, spacing=5.0)


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_oblique_nifti_on_input_grid(tmp_path: Path, nifti_in: tuple[Path, np.ndarray], tiny_weights: Path) -> None:
    import nibabel as nib

    src, aff = nifti_in
    before = sha256(src)
    out = tmp_path / "sct.nii.gz"
    run(["translate", "mri2ct", str(src), "-o", str(out), "--weights", str(tiny_weights), "--samples", "4",
         "--preview", *STEPS])
    assert sha256(src) == before  # the input is byte-identical afterwards
    img, ref = nib.load(str(out)), nib.load(str(src))
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), aff, atol=1e-4)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    data = img.get_fdata()
    assert -1024 <= data.min() and data.max() <= 2048  # HU within the model window
    assert b"SYNTHETIC" in bytes(img.header["descrip"])
    std = nib.load(str(tmp_path / "sct_std.nii.gz"))
    assert std.shape == ref.shape and float(std.get_fdata().max()) > 0  # K=4 samples differ
    np.testing.assert_allclose(std.get_sform(), aff, atol=1e-5)
    assert (tmp_path / "sct_preview.png").stat().st_size > 0
    rep = json.loads((tmp_path / "sct_run.json").read_text())
    assert rep["inputs"][0]["sha256"] and {Path(o["path"]).name for o in rep["outputs"]} >= {"sct.nii.gz",
                                                                                               "sct_std.nii.gz"}
    assert rep["weights"]["sha256"] and rep["versions"]["torch"] and rep["device"] == "cpu"


def test_api_returns_a_typed_result_matching_the_run_report(tmp_path: Path, nifti_in: tuple[Path, np.ndarray],
                                                              tiny_weights: Path) -> None:
    from medm2g_cli.api import CaseOutput, TranslateResult, translate_path
    from medm2g_cli.inference.runtime import InferenceSettings

    src, _ = nifti_in
    out = tmp_path / "sct.nii.gz"
    res = translate_path("mri2ct", src, out, samples=2,
                         settings=InferenceSettings(weights=tiny_weights, steps=2, device="cpu"))
    assert isinstance(res, TranslateResult) and isinstance(res.cases[0], CaseOutput)
    assert res.run_report == tmp_path / "sct_run.json" and res.skipped == ()
    on_disk = json.loads(res.run_report.read_text())
    assert on_disk == json.loads(json.dumps(res.report))  # the typed result carries the report as written
    case = res.cases[0]
    assert case.files == (out, tmp_path / "sct_std.nii.gz") and all(p.is_file() for p in case.files)
    assert on_disk["cases"][0]["files"] == [str(p) for p in case.files] and case.input == src
    assert res.to_dict() == {**res.report, "run_report": str(res.run_report)}


def test_dicom_series_in_dicom_out(tmp_path: Path, mr_series: Path, tiny_weights: Path) -> None:
    import pydicom
    import SimpleITK as sitk  # noqa: N813

    before = sha256(mr_series)
    out = tmp_path / "sct_dicom"
    run(["translate", "mri2ct", str(mr_series), "-o", str(out), "--weights", str(tiny_weights), *STEPS])
    assert sha256(mr_series) == before
    src = [pydicom.dcmread(p) for p in sorted(mr_series.iterdir())]
    outs = [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"))]
    assert len(outs) == len(src)
    src_uids = {d.SOPInstanceUID for d in src} | {src[0].SeriesInstanceUID}
    for d in outs:
        assert d.SOPInstanceUID not in src_uids and d.SeriesInstanceUID not in src_uids
        assert d.StudyInstanceUID == src[0].StudyInstanceUID
        assert d.SyntheticData == "YES" and d.ImageType[0] == "DERIVED"
        assert d.SeriesDescription.startswith("SYNTHETIC") and d.Modality == "CT"
        assert d.RescaleType == "HU"
    assert len({d.SeriesInstanceUID for d in outs}) == 1

    def itk(folder: Path) -> sitk.Image:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    a, b = itk(mr_series), itk(out)
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_same_seed_identical_and_batch_size_invariant(tmp_path: Path, nifti_in: tuple[Path, np.ndarray],
                                                      tiny_weights: Path) -> None:
    import nibabel as nib

    src, _ = nifti_in
    outs = {}
    # same options -> identical; across batch sizes equal to float rounding in fp32 (with the default
    # precision "auto", bf16 autoencoders round differently per batch shape: identical only per batch size)
    for tag, bs, precision in (("a", "4", []), ("b", "4", []), ("c", "4", ["--precision", "fp32"]),
                               ("e", "1", ["--precision", "fp32"])):
        out = tmp_path / f"{tag}.nii.gz"
        run(["translate", "t1-t2", str(src), "-o", str(out), "--weights", str(tiny_weights), "--seed", "7",
             "--batch-size", bs, *precision, *STEPS])
        outs[tag] = nib.load(str(out)).get_fdata()
    assert np.array_equal(outs["a"], outs["b"])
    np.testing.assert_allclose(outs["c"], outs["e"], rtol=0, atol=1e-3 * float(np.ptp(outs["c"])) + 1e-3)
    run(["translate", "t1-t2", str(src), "-o", str(tmp_path / "d.nii.gz"), "--weights", str(tiny_weights),
         "--seed", "8", *STEPS])
    assert not np.array_equal(outs["a"], nib.load(str(tmp_path / "d.nii.gz")).get_fdata())


def test_folder_shards_and_continue(tmp_path: Path, nifti_in: tuple[Path, np.ndarray], tiny_weights: Path) -> None:
    import shutil

    src, _ = nifti_in
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        shutil.copy(src, cases / name)
    out = tmp_path / "out"
    run(["translate", "t1-pd", str(cases), "-o", str(out), "--weights", str(tiny_weights), "--num-parts", "2",
         "--part-id", "1", *STEPS])
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["b.nii.gz"]
    stamp = (out / "b.nii.gz").stat().st_mtime_ns
    listing = tmp_path / "list.txt"
    listing.write_text("cases/a.nii.gz\n# comment\ncases/b.nii.gz\n\ncases/c.nii.gz\n")
    run(["translate", "t1-pd", str(listing), "-o", str(out), "--weights", str(tiny_weights), "--continue",
         "--json", *STEPS])
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    assert (out / "b.nii.gz").stat().st_mtime_ns == stamp  # the finished case was skipped
    rep = json.loads((out / "run_report.json").read_text())
    assert [Path(s).name for s in rep["skipped"]] == ["b.nii.gz"]
    assert [Path(c["input"]).name for c in rep["cases"]] == ["a.nii.gz", "c.nii.gz"]


def test_errors_before_model_work(tmp_path: Path, nifti_in: tuple[Path, np.ndarray], ct_series: Path,
                                  tiny_weights: Path, text_xray_weights: Path, no_model: None,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    src, aff = nifti_in
    w = ["--weights", str(tiny_weights), *STEPS]
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(src.read_bytes()[:200])
    assert "broken.nii.gz" in _fails(["translate", "mri2ct", str(broken), "-o", str(tmp_path / "o1.nii.gz"), *w], capsys)
    msg = _fails(["translate", "mri2ct", str(ct_series), "-o", str(tmp_path / "o2"), *w], capsys)
    assert "CT" in msg and "MRI" in msg
    hu = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), -1000, np.int16), aff), str(hu))
    assert "looks like a CT" in _fails(["translate", "t1-t2", str(hu), "-o", str(tmp_path / "o3.nii.gz"), *w], capsys)
    msg = _fails(["translate", "mri2ct", str(src), "-o", str(tmp_path / "o4.nii.gz"), "--weights",
                  str(text_xray_weights), *STEPS], capsys)
    assert "no mri branch" in msg or "no ct branch" in msg
    exists = tmp_path / "exists.nii.gz"
    exists.write_bytes(b"keep me")
    assert "--overwrite" in _fails(["translate", "mri2ct", str(src), "-o", str(exists), *w], capsys)
    assert exists.read_bytes() == b"keep me"
    assert "unknown direction" in _fails(["translate", "mri2pet", str(src), "-o", str(tmp_path / "x.nii.gz"), *w],
                                         capsys)
    assert "does not exist" in _fails(["translate", "mri2ct", str(tmp_path / "nope.nii.gz"), "-o",
                                       str(tmp_path / "o5.nii.gz"), *w], capsys)
    assert not list(tmp_path.glob("o*"))  # no partial outputs


def test_cli_error_is_one_line_subprocess(tmp_path: Path, tiny_weights: Path) -> None:
    exe = Path(sys.executable).with_name("medm2g")
    proc = subprocess.run([str(exe), "translate", "mri2ct", str(tmp_path / "missing.nii.gz"), "-o",
                           str(tmp_path / "o.nii.gz"), "--weights", str(tiny_weights)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def test_oblique_nifti_to_dicom_and_mha_geometry(tmp_path: Path, nifti_in: tuple[Path, np.ndarray],
                                                 tiny_weights: Path) -> None:
    import nibabel as nib
    import SimpleITK as sitk  # noqa: N813

    src, aff = nifti_in
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    out = tmp_path / "sct_series"
    run(["translate", "mri2ct", str(src), "-o", str(out), "--weights", str(tiny_weights), *STEPS])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    img = reader.Execute()
    assert img.GetSize() == nib.load(str(src)).shape
    np.testing.assert_allclose(img.GetOrigin(), lps[:3, 3], atol=1e-3)
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), lps[:3, :3] / spacing, atol=1e-5)
    mha = tmp_path / "sct.mha"
    run(["translate", "mri2ct", str(src), "-o", str(mha), "--weights", str(tiny_weights), *STEPS])
    m = sitk.ReadImage(str(mha))
    np.testing.assert_allclose(m.GetOrigin(), lps[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.reshape(m.GetDirection(), (3, 3)), lps[:3, :3] / spacing, atol=1e-6)
    # the DICOM series (int16 HU) and the MHA (float) hold the same values
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), np.rint(sitk.GetArrayFromImage(m)), atol=1.0)
