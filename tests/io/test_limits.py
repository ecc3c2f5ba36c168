"""Size limits and foreign reads (io/limits.py, io/itk_header.py): every reader checks what a header
declares before it allocates, and a MetaImage/NRRD header cannot make ITK read another file."""

from __future__ import annotations

import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from PIL import Image

from medm2g_cli.errors import ConfigError, InputError
from medm2g_cli.io import limits, read_volume


def _ct_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def _mhd(folder: Path, name: str = "a.mhd") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5)), str(folder / name))
    return folder / name


def _retarget(header: Path, new: Path, data_file: str) -> Path:
    text = header.read_text()
    key = "data file: " if text.startswith("NRRD") else "ElementDataFile = "
    lines = [(key + data_file) if ln.startswith(key) else ln for ln in text.splitlines()]
    new.write_text("\n".join(lines) + "\n")
    return new


def test_default_limit_fits_a_long_ct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(limits.ENV, raising=False)
    assert limits.check_voxels("ct", (512, 512, 2000), 8) == 512 * 512 * 2000
    with pytest.raises(InputError) as exc:
        limits.check_voxels("bomb", (3000, 3000, 3000), 4)
    assert limits.ENV in exc.value.one_line()  # the hint names the variable that raises the limit
    monkeypatch.setenv(limits.ENV, "30000000000")
    assert limits.check_voxels("huge", (3000, 3000, 3000), 4) == 27_000_000_000
    monkeypatch.setenv(limits.ENV, "lots")
    with pytest.raises(ConfigError, match=limits.ENV):
        limits.max_voxels()


def test_metaimage_data_file_elsewhere_is_refused(tmp_path: Path) -> None:
    good = _mhd(tmp_path / "a")
    assert read_volume(good).shape == (5, 4, 3)
    # A header that names /etc/passwd (16 bytes as 4x4 uchar pixels: old code read them as an image).
    passwd = tmp_path / "a" / "passwd.mhd"
    passwd.write_text("ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n"
                      "ElementDataFile = /etc/passwd\n")
    with pytest.raises(InputError, match="outside its own folder"):
        read_volume(passwd)
    # A valid data file in another folder, named by a relative path.
    other = _mhd(tmp_path / "b", "b.mhd")
    with pytest.raises(InputError, match="outside its own folder"):
        read_volume(_retarget(other, tmp_path / "a" / "c.mhd", "../b/b.raw"))
    # A sibling symlink to a file elsewhere is a foreign read too.
    (tmp_path / "a" / "link.raw").symlink_to(tmp_path / "b" / "b.raw")
    with pytest.raises(InputError, match="outside its own folder"):
        read_volume(_retarget(other, tmp_path / "a" / "d.mhd", "link.raw"))
    # Several data files (LIST / pattern) are refused, not followed.
    with pytest.raises(InputError, match="several files"):
        read_volume(_retarget(other, tmp_path / "a" / "e.mhd", "LIST"))


def test_nrrd_data_file_elsewhere_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 2, 4), np.uint8)), str(tmp_path / "x" / "h.nhdr"))
    assert read_volume(tmp_path / "x" / "h.nhdr").shape == (4, 2, 2)
    for target in ("/etc/passwd", "../x/h.raw", str(tmp_path / "x" / "h.raw")):
        bad = _retarget(tmp_path / "x" / "h.nhdr", tmp_path / "bad.nhdr", target)
        with pytest.raises(InputError, match="outside its own folder"):
            read_volume(bad)
    # A MetaImage header behind a .nrrd name is read as NRRD (ITK's content sniffing is off).
    disguised = tmp_path / "x" / "m.nrrd"
    disguised.write_text("ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n"
                         "ElementDataFile = /etc/passwd\n")
    with pytest.raises(InputError):
        read_volume(disguised)


@pytest.mark.parametrize("head", [
    b"ObjectType = Image\nNDims = 3\nDimSize = 300 300 300\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
    b"ObjectType = Image\nNDims = 3\nCompressedData = True\nDimSize = 3000 3000 300\nElementType = MET_FLOAT\n"
    b"ElementDataFile = LOCAL\n",
    b"NRRD0004\ntype: float\ndimension: 3\nsizes: 300 300 300\nendian: little\nencoding: raw\n\n",
    b"NRRD0004\ntype: float\ndimension: 3\nsizes: 300 3000 3000\nendian: little\nencoding: gzip\n\n",
])
def test_itk_header_larger_than_its_data_is_refused(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / ("bomb.nrrd" if head.startswith(b"NRRD") else "bomb.mha")
    path.write_bytes(head + b"\0" * 4)
    with pytest.raises(InputError, match="declares"):
        read_volume(path)


def test_limit_applies_to_every_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One variable lowers (and raises) the cap of the NIfTI, ITK, PNG and DICOM readers."""
    nii = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4)), str(nii))
    mha = tmp_path / "v.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((20, 20, 20), np.int16)), str(mha), True)
    png = tmp_path / "v.png"
    Image.fromarray(np.full((100, 100), 7, np.uint8)).save(png)
    dcm = _ct_small()  # 128 x 128
    for p in (nii, mha, png, dcm):
        read_volume(p)
    monkeypatch.setenv(limits.ENV, "5000")
    for p in (nii, mha, png, dcm):
        with pytest.raises(InputError, match="limit"):
            read_volume(p)
    monkeypatch.setenv(limits.ENV, "20000")
    for p in (png, dcm):
        read_volume(p)


def test_dicom_series_total_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for i in range(3):
        ds = pydicom.dcmread(_ct_small())
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), i + 1
        ds.ImagePositionPatient = [0, 0, 5.0 * i]
        ds.save_as(tmp_path / f"s{i}.dcm")
    assert read_volume(tmp_path).shape == (128, 128, 3)
    monkeypatch.setenv(limits.ENV, "40000")  # each slice (16384) fits, the series (49152) does not
    with pytest.raises(InputError, match="128x128x3x1"):
        read_volume(tmp_path)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares width x height 8-bit grey pixels, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_png_decompression_bomb_is_a_clear_error(tmp_path: Path) -> None:
    # 60000 x 60000 = 3.6e9 pixels declared in a 100-byte file: Pillow's bomb error, now ours.
    with pytest.raises(InputError, match="more pixels than the limit"):
        read_volume(_png_header_only(tmp_path / "bomb.png", 60000, 60000))
    # Between the limit and Pillow's 2x error threshold (Pillow only warns): refused as well.
    with pytest.raises(InputError, match="limit"):
        read_volume(_png_header_only(tmp_path / "warn.png", 40000, 30000))


def test_png_colour_check_is_unchanged(tmp_path: Path) -> None:
    grey = np.full((8, 8, 3), 100, np.uint8)
    grey[..., 0] += 8  # |c - mean| = 5.3: still grey
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert read_volume(tmp_path / "g.png").meta["notes"] == ["RGB image converted to 8-bit greyscale"]
    colour = grey.copy()
    colour[0, 0] = (120, 100, 100)  # |c - mean| = 13.3
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="colour"):
        read_volume(tmp_path / "c.png")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder redirected, so a test can see what the zip reader leaves behind."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_dicom_zip_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path) -> None:
    data = _ct_small().read_bytes()
    three = tmp_path / "three.zip"
    with zipfile.ZipFile(three, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/one.dcm", data)
        zf.writestr("b/two.txt", b"notes")
        zf.writestr("c/three.txt", b"more notes")
    assert read_volume(three).shape == (128, 128, 1)
    monkeypatch.setenv(limits.ENV, "30000")  # members cap 100000 * 30000 // 2**30 = 2
    with pytest.raises(InputError, match="holds 3 files"):
        read_volume(three)
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("one.dcm", data)
    monkeypatch.setenv(limits.ENV, "4000")  # 32 000 bytes < the 39 kB CT_small inside
    with pytest.raises(InputError, match="expands to"):
        read_volume(one)
    monkeypatch.delenv(limits.ENV)
    bomb = tmp_path / "bomb.zip"  # bzip2 packs 64 MiB of zeros into ~50 bytes: no deflate does that
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("slice.dcm", b"\0" * (64 << 20))
    with pytest.raises(InputError, match="compression ratio"):
        read_volume(bomb)
    assert list(private_tmp.iterdir()) == []  # every extraction folder was removed


def test_damaged_zip_member_is_an_input_error(tmp_path: Path, private_tmp: Path) -> None:
    data = _ct_small().read_bytes()
    good = tmp_path / "z.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("one.dcm", data)
    raw = bytearray(good.read_bytes())
    info = zipfile.ZipFile(good).infolist()[0]
    start = info.header_offset + 30 + len(info.filename)
    raw[start + 100: start + 110] = b"\xff" * 10  # corrupt the deflate stream / CRC
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="cannot extract 'bad.zip'"):
        read_volume(bad)
    assert list(private_tmp.iterdir()) == []


def test_evaluate_and_fid_readers_apply_the_same_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate`` reads predictions/references and FID pictures itself: same limits, same foreign-read rule."""
    from medm2g_cli.metrics.fid import load_picture
    from medm2g_cli.metrics.protocols import read_slices

    bomb = _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    for reader in (read_slices, load_picture):
        with pytest.raises(InputError, match="more pixels than the limit"):
            reader(bomb)
    (tmp_path / "p.mhd").write_text("ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n"
                                    "ElementDataFile = /etc/passwd\n")
    with pytest.raises(InputError, match="outside its own folder"):
        read_slices(tmp_path / "p.mhd")
    vol = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "v.mha"))
    np.testing.assert_array_equal(read_slices(tmp_path / "v.mha"), vol)  # (z, y, x) as before
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4)), str(tmp_path / "v.nii.gz"))
    assert read_slices(tmp_path / "v.nii.gz").shape == (20, 20, 20)
    monkeypatch.setenv(limits.ENV, "5000")
    with pytest.raises(InputError, match="limit"):
        read_slices(tmp_path / "v.nii.gz")
