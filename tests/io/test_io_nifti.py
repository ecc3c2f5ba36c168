"""NIfTI read/write: exact affine in sform+qform, explicit dtype, no scaling, 4-D, big-endian, corrupt files."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.errors import InputError
from medm2g_cli.io import Volume, read_volume, write_volume


def test_big_endian_anatomical(nib_data, tmp_path):
    import nibabel as nib

    src = nib_data / "anatomical.nii"
    ref = nib.load(str(src))
    assert ref.header.endianness == ">"
    vol = read_volume(src)
    assert vol.shape == ref.shape
    assert vol.array.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(vol.array, np.asarray(ref.dataobj))
    np.testing.assert_array_equal(vol.affine, ref.affine)
    out = write_volume(vol, tmp_path / "a.nii.gz")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)


def test_4d_needs_volume_index(nib_data):
    with pytest.raises(InputError) as err:
        read_volume(nib_data / "example4d.nii.gz")
    assert "--volume" in err.value.one_line() and "4-D" in err.value.message
    v1 = read_volume(nib_data / "example4d.nii.gz", volume_index=1)
    assert v1.shape == (128, 96, 24)
    with pytest.raises(InputError):
        read_volume(nib_data / "example4d.nii.gz", volume_index=5)


def test_mni_template(mni_t1):
    vol = read_volume(mni_t1)
    assert vol.shape == (197, 233, 189)
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert vol.orientation == "RAS"
    assert float(vol.array.max()) > 0


def test_write_sets_sform_qform_dtype_no_scaling(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    aff = np.array([[0.9, 0.1, 0.0, -10.5], [-0.1, 0.9, 0.0, 3.25], [0.0, 0.0, 2.0, 7.0], [0, 0, 0, 1]])
    arr = rng.normal(0, 500, (6, 5, 4)).astype(np.float32)
    out = write_volume(Volume(arr, aff, "ct"), tmp_path / "f.nii.gz", description="medm2g test provenance")
    img = nib.load(str(out))
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), aff, atol=1e-4)
    assert img.get_data_dtype() == np.float32
    slope, inter = img.header.get_slope_inter()
    assert slope in (None, 1.0) and inter in (None, 0.0)
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr)  # no quantisation
    assert img.header["descrip"].tobytes().startswith(b"medm2g test provenance")


def test_float64_written_as_float32_and_existing_output_refused(tmp_path):
    from medm2g_cli.errors import OutputExistsError

    vol = Volume(np.linspace(0, 1, 24).reshape(2, 3, 4), np.eye(4))
    out = write_volume(vol, tmp_path / "x.nii")
    assert read_volume(out).array.dtype == np.float32
    with pytest.raises(OutputExistsError):
        write_volume(vol, out)
    write_volume(vol, out, overwrite=True)


def test_truncated_gz_is_input_error(nib_data, tmp_path):
    data = (nib_data / "example4d.nii.gz").read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_volume(bad, volume_index=0)
    assert "truncated" in err.value.one_line()
