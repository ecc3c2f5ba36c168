"""DICOM series read/write: sorting, rescale, localizers, series selection, geometry checks,
derived synthetic series, 48-orientation and oblique round trips, SimpleITK cross-check."""

from __future__ import annotations

import itertools
import random
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medm2g_cli.errors import DicomSeriesError, GeometryError, InputError
from medm2g_cli.io import Volume, list_dicom_series, read_volume, write_volume


def _make_series(src, folder, n=6, step=2.0, positions=None, series_uid=None, shuffle_seed=0, localizer=False,
                 tilt=0.0):
    """Copies of one real slice with shifted ImagePositionPatient, written under shuffled file names."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(str(src))
    uid = series_uid or generate_uid()
    origin = np.array([float(v) for v in base.ImagePositionPatient])
    positions = positions if positions is not None else [k * step for k in range(n)]
    names = [f"img_{i:03d}.dcm" for i in range(len(positions))]
    random.Random(shuffle_seed).shuffle(names)
    px = base.pixel_array
    for k, z in enumerate(positions):
        ds = pydicom.dcmread(str(src))
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(origin[0]) + tilt * k, float(origin[1]), float(origin[2] + z)]
        ds.PixelData = (px + 10 * k).astype(px.dtype).tobytes()  # slice k is identifiable
        ds.save_as(str(folder / names[k]))
    if localizer:
        ds = pydicom.dcmread(str(src))
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(str(folder / "aaa_scout.dcm"))
    return uid, px


def test_ct_small_and_mr_small(pydicom_file):
    ct = read_volume(pydicom_file("CT_small.dcm"))
    ds = pydicom.dcmread(str(pydicom_file("CT_small.dcm")))
    assert ct.shape == (128, 128, 1) and ct.modality == "ct"
    expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(ct.array[:, :, 0].T, expected)  # rescale applied, (col, row) order
    assert ct.spacing[:2] == pytest.approx((0.661468, 0.661468))
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(ct.affine[:3, 3], ipp * [-1, -1, 1])  # LPS -> RAS
    mr = read_volume(pydicom_file("MR_small.dcm"))
    assert mr.shape == (64, 64, 1) and mr.modality == "mri"
    assert mr.meta["StudyInstanceUID"]


def test_series_sorted_by_position_not_name(pydicom_file, tmp_path):
    uid, px = _make_series(pydicom_file("CT_small.dcm"), tmp_path / "s", n=6, step=2.0, localizer=True)
    vol = read_volume(tmp_path / "s")
    assert vol.shape == (128, 128, 6)
    assert any("localizer" in n for n in vol.meta["notes"])
    base = read_volume(pydicom_file("CT_small.dcm")).array[:, :, 0].astype(np.int32)
    for k in range(6):
        np.testing.assert_array_equal(vol.array[:, :, k].astype(np.int32), base + 10 * k)
    assert vol.spacing[2] == pytest.approx(2.0)
    assert vol.meta["SeriesInstanceUID"] == uid


def test_ct5n_real_series(ct5n_dir):
    vol = read_volume(ct5n_dir)
    assert vol.shape == (16, 16, 5)
    assert vol.spacing == pytest.approx((0.488281, 0.488281, 2.5), abs=1e-5)
    z = [float(pydicom.dcmread(str(f)).ImagePositionPatient[2]) for f in sorted(ct5n_dir.iterdir())]
    # voxel k lies at the z of the k-th position in instance order (8.76 ... -1.24)
    world_z = [float((vol.affine @ [0, 0, k, 1])[2]) for k in range(5)]
    np.testing.assert_allclose(sorted(world_z), sorted(z), atol=1e-4)
    assert list_dicom_series(ct5n_dir)[0]["n_slices"] == 5


def test_two_series_need_choice(pydicom_file, tmp_path):
    u1, _ = _make_series(pydicom_file("CT_small.dcm"), tmp_path / "d", n=3)
    u2, _ = _make_series(pydicom_file("MR_small.dcm"), tmp_path / "d" / "mr", n=2)
    with pytest.raises(DicomSeriesError) as err:
        read_volume(tmp_path / "d")
    assert u1 in err.value.message and u2 in err.value.message and "--series" in err.value.hint
    assert read_volume(tmp_path / "d", series=u2).shape == (64, 64, 2)
    assert read_volume(tmp_path / "d", series=u1).modality == "ct"


def test_uneven_spacing_and_tilt_name_override(pydicom_file, tmp_path):
    _make_series(pydicom_file("CT_small.dcm"), tmp_path / "gap", positions=[0, 2, 4, 8, 10])
    with pytest.raises(GeometryError) as err:
        read_volume(tmp_path / "gap")
    assert "--allow-irregular" in err.value.hint
    assert read_volume(tmp_path / "gap", allow_irregular=True).shape[2] == 5
    _make_series(pydicom_file("CT_small.dcm"), tmp_path / "tilt", n=4, step=2.0, tilt=0.5)
    with pytest.raises(GeometryError) as err:
        read_volume(tmp_path / "tilt")
    assert "tilt" in err.value.message and "--allow-irregular" in err.value.hint
    sheared = read_volume(tmp_path / "tilt", allow_irregular=True)
    np.testing.assert_allclose(sheared.affine[:3, 2], [-0.5, 0.0, 2.0], atol=1e-6)


def test_no_dicom_and_no_pixels(pydicom_file, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DicomSeriesError):
        read_volume(tmp_path / "empty")
    ds = pydicom.dcmread(str(pydicom_file("CT_small.dcm")))
    del ds.PixelData
    (tmp_path / "nopix").mkdir()
    ds.save_as(str(tmp_path / "nopix" / "a.dcm"))
    with pytest.raises(InputError, match="no pixel data"):
        read_volume(tmp_path / "nopix")


def test_zip_input(ct5n_dir, tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in ct5n_dir.iterdir():
            zf.write(f, arcname=f"series/{f.name}")
    np.testing.assert_array_equal(read_volume(z).array, read_volume(ct5n_dir).array)


def _perm_affines():
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((1, -1), repeat=3):
            aff = np.zeros((4, 4))
            aff[3, 3] = 1
            for col, (row, f) in enumerate(zip(perm, flips, strict=True)):
                aff[row, col] = f * (0.7, 1.3, 2.1)[col]
            aff[:3, 3] = (10.25, -20.5, 5.125)
            yield aff


def test_roundtrip_48_orientations(tmp_path):
    rng = np.random.default_rng(0)
    affines = list(_perm_affines())
    assert len(affines) == 48
    for n, aff in enumerate(affines):
        arr = rng.integers(-1024, 3000, (5, 4, 3)).astype(np.int16)
        nii = write_volume(Volume(arr, aff, "ct"), tmp_path / f"a{n}.nii.gz")
        dcm = write_volume(read_volume(nii, modality="ct"), tmp_path / f"d{n}", format="dicom")
        back = read_volume(write_volume(read_volume(dcm), tmp_path / f"b{n}.nii.gz"))
        assert np.abs(back.affine - aff).max() < 1e-4, (n, back.affine, aff)
        assert back.array.dtype == np.int16
        np.testing.assert_array_equal(back.array, arr)


def _oblique(sign):
    from scipy.spatial.transform import Rotation

    aff = np.eye(4)
    aff[:3, :3] = Rotation.from_euler("xyz", [17, -23, 31], degrees=True).as_matrix() @ np.diag([0.8, 1.1, 2.5 * sign])
    aff[:3, 3] = (-33.3, 12.7, -80.1)
    return aff


@pytest.mark.parametrize("sign", [1, -1])
def test_oblique_roundtrip_and_simpleitk_geometry(tmp_path, sign):
    import SimpleITK as sitk

    aff = _oblique(sign)
    arr = np.random.default_rng(1).integers(-1000, 2000, (6, 7, 5)).astype(np.int16)
    out = write_volume(Volume(arr, aff, "ct"), tmp_path / "s", format="dicom", description="unit test")
    back = read_volume(out)
    assert np.abs(back.affine - aff).max() < 1e-4
    np.testing.assert_array_equal(back.array, arr)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    img = reader.Execute()
    # Expected ITK geometry (LPS; ITK stacks slices ascending along the normal).
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    if sign < 0:  # our k runs against the normal: ITK's first slice is our last
        lps[:3, 3] = lps[:3, 3] + lps[:3, 2] * (arr.shape[2] - 1)
        lps[:3, 2] *= -1
        arr = arr[:, :, ::-1]
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    np.testing.assert_allclose(img.GetOrigin(), lps[:3, 3], atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), lps[:3, :3] / spacing, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), arr)


def test_derived_series_tags_keep_study(pydicom_file, tmp_path):
    src = read_volume(pydicom_file("CT_small.dcm"))
    out = write_volume(src.with_array(src.array + 1), tmp_path / "syn", format="dicom", source_meta=src.meta,
                       description="mri2ct model abc123")
    files = sorted(out.glob("*.dcm"))
    ds = pydicom.dcmread(str(files[0]))
    assert ds.StudyInstanceUID == src.meta["StudyInstanceUID"]
    assert ds.PatientID == src.meta["PatientID"]
    assert ds.SeriesInstanceUID != src.meta["SeriesInstanceUID"]
    assert ds.FrameOfReferenceUID == src.meta["FrameOfReferenceUID"]  # same grid
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SyntheticData == "YES" and ds[0x0008, 0x001C].value == "YES"
    assert ds.SeriesDescription.startswith("SYNTHETIC")
    assert "mri2ct model abc123" in ds.DerivationDescription
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.pixel_array.dtype == np.int16 and float(ds.RescaleSlope) == 1.0
    mr = read_volume(pydicom_file("MR_small.dcm"))
    ds_mr = pydicom.dcmread(str(sorted(write_volume(mr, tmp_path / "mr", format="dicom").glob("*.dcm"))[0]))
    assert ds_mr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds_mr.Modality == "MR"
