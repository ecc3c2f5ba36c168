"""MetaImage/NRRD round trips (LPS<->RAS), PNG/JPEG pictures and PNG slice folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medm2g_cli.errors import FormatError, GeometryError, InputError
from medm2g_cli.io import Volume, infer_format, read_volume, write_volume


def _oblique_affine():
    aff = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.9, 1.2, 3.0])
    aff[:3, 3] = (12.5, -7.25, 40.0)
    return aff


@pytest.mark.parametrize("name", ["v.mha", "v.mhd", "v.nrrd"])
def test_itk_roundtrip(tmp_path, name):
    import SimpleITK as sitk

    arr = np.random.default_rng(0).integers(-500, 500, (5, 6, 7)).astype(np.int16)
    aff = _oblique_affine()
    out = write_volume(Volume(arr, aff, "ct"), tmp_path / name)
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, aff, atol=1e-6)
    img = sitk.ReadImage(str(out))  # independent reader: LPS origin
    np.testing.assert_allclose(img.GetOrigin(), [-12.5, 7.25, 40.0], atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_nifti_to_mha_same_world(mni_t1, tmp_path):
    vol = read_volume(mni_t1)
    out = write_volume(vol, tmp_path / "mni.nrrd")
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    np.testing.assert_array_equal(back.array, vol.array)


def test_png_8_and_16_bit(tmp_path):
    a16 = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)  # rows x cols
    Image.fromarray(a16).save(tmp_path / "x16.png")
    v = read_volume(tmp_path / "x16.png", modality="xray")
    assert v.shape == (10, 12, 1) and v.array.dtype == np.uint16 and v.modality == "xray"
    np.testing.assert_array_equal(v.array[:, :, 0].T, a16)
    a8 = (np.arange(120).reshape(12, 10) * 2).astype(np.uint8)
    Image.fromarray(a8).save(tmp_path / "x8.jpg", quality=100)
    assert read_volume(tmp_path / "x8.jpg").array.dtype == np.uint8
    # write back: 8-bit on request, exact for a full-range window
    out = write_volume(v, tmp_path / "o.png", window=(0, 65535), bits=16)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), a16)
    out8 = write_volume(v, tmp_path / "o8.png", bits=8)
    assert Image.open(out8).mode == "L"


def test_rgb_grey_converted_colour_refused(tmp_path):
    grey = np.stack([np.arange(64, dtype=np.uint8).reshape(8, 8)] * 3, axis=-1)
    Image.fromarray(grey, "RGB").save(tmp_path / "g.png")
    v = read_volume(tmp_path / "g.png")
    assert v.array.dtype == np.uint8 and any("converted" in n for n in v.meta["notes"])
    colour = grey.copy()
    colour[..., 0] = 255
    Image.fromarray(colour, "RGB").save(tmp_path / "c.png")
    with pytest.raises(FormatError, match="colour"):
        read_volume(tmp_path / "c.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError):
        read_volume(tmp_path / "bad.png")


def test_png_folder_roundtrip_needs_reference(tmp_path):
    aff = np.diag([-0.8, 1.0, 2.0, 1.0])
    aff[:3, 3] = (5, 6, 7)
    arr = np.random.default_rng(2).integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    ref = Volume(arr, aff, "ct")
    for axis in ("axial", "coronal", "sagittal"):
        folder = write_volume(ref, tmp_path / f"png_{axis}", format="png", window=(-1000, 1000), axis=axis)
        assert infer_format(folder) == "png"
        with pytest.raises(InputError) as err:
            read_volume(folder)
        assert "--reference" in err.value.one_line()
        back = read_volume(folder, reference=ref)
        np.testing.assert_array_equal(back.affine, aff)
        # 16-bit quantisation of a 2000 HU window: error <= 2000 / 65535 / 2
        assert np.abs(back.array - arr).max() <= 0.02
    other = Volume(np.zeros((3, 3, 3), np.int16), np.eye(4))
    with pytest.raises(GeometryError):
        read_volume(tmp_path / "png_axial", reference=other)


def test_unknown_suffix(tmp_path):
    (tmp_path / "x.foo").write_text("x")
    with pytest.raises(FormatError, match="unknown format"):
        read_volume(tmp_path / "x.foo")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing.nii.gz")
