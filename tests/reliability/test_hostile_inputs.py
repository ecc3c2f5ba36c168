"""Hostile inputs (issue #19 item 6), through the bad-input corpus harness: headers that name files
elsewhere on the machine, headers that ask for more memory than any scan needs (MetaImage, NRRD,
PNG, DICOM, zip bombs). Each: exit code 2, one ``error:`` line, nothing written, inputs unchanged."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rel_helpers import dicom_series, pydicom_testfile
from test_bad_input_corpus import FAST, Case, _convert, _translate
from test_bad_input_corpus import test_bad_input as check_case


def _mhd(ctx: SimpleNamespace, folder: Path, name: str = "a.mhd") -> Path:
    import SimpleITK as sitk  # noqa: N813

    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 8, 8), np.int16)), str(folder / name))
    return folder / name


def _retarget(header: Path, data_file: str, new: Path) -> Path:
    text = header.read_text()
    key = "data file: " if text.startswith("NRRD") else "ElementDataFile = "
    new.write_text("\n".join((key + data_file) if ln.startswith(key) else ln for ln in text.splitlines()) + "\n")
    return new


def mha_reads_etc_passwd(ctx):
    (ctx.d / "h.mhd").write_text("ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n"
                                 "ElementDataFile = /etc/passwd\n")
    return ["info", str(ctx.d / "h.mhd")]


def nhdr_data_in_other_folder(ctx):
    import SimpleITK as sitk  # noqa: N813

    (ctx.d / "other").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 8, 8), np.int16)), str(ctx.d / "other" / "b.nhdr"))
    (ctx.d / "mine").mkdir()
    return _convert(ctx, _retarget(ctx.d / "other" / "b.nhdr", "../other/b.raw", ctx.d / "mine" / "c.nhdr"))


def mha_sibling_symlink_out(ctx):
    other = _mhd(ctx, ctx.d / "other")
    (ctx.d / "mine").mkdir()
    (ctx.d / "mine" / "a.raw").symlink_to(other.with_suffix(".raw"))
    return _convert(ctx, _retarget(other, "a.raw", ctx.d / "mine" / "a.mhd"))


def mha_memory_bomb(ctx):
    (ctx.d / "bomb.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 1000 1000 500\nElementType = MET_FLOAT\n"
                                     b"ElementDataFile = LOCAL\n" + bytes(4))
    return _convert(ctx, ctx.d / "bomb.mha")


def nrrd_over_limit(ctx):
    (ctx.d / "huge.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 3000 3000 3000\nendian: little\n"
                                      b"encoding: gzip\n\n" + zlib.compress(bytes(1 << 16)))
    return _translate(ctx, ctx.d / "huge.nrrd")


def png_bomb(ctx):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    (ctx.d / "cxr.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
                                    + chunk(b"IEND", b""))
    return ["report", str(ctx.d / "cxr.png"), "--weights", str(ctx.w), *FAST]


def dicom_zip_bomb(ctx):
    with zipfile.ZipFile(ctx.d / "study.zip", "w", zipfile.ZIP_BZIP2) as zf:
        zf.write(pydicom_testfile("CT_small.dcm"), "IM1.dcm")
        zf.writestr("IM2.dcm", bytes(64 << 20))
    return _convert(ctx, ctx.d / "study.zip")


def dicom_zip_too_many_files(ctx):
    ctx.mp.setenv("MEDM2G_MAX_VOXELS", "30000")  # 100 000 members scaled down to 2
    with zipfile.ZipFile(ctx.d / "study.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.write(pydicom_testfile("CT_small.dcm"), f"IM{i}.dcm")
    return ["info", str(ctx.d / "study.zip")]


def dicom_absurd_frames(ctx):
    def edit(ds, i):
        ds.NumberOfFrames = 200000
    return _convert(ctx, dicom_series(ctx.d / "s", n=1, edit=edit))


HOSTILE: list[Case] = [
    Case("mha-data-file-etc-passwd", "foreign read", "info", mha_reads_etc_passwd, "outside its own folder"),
    Case("nhdr-data-file-other-folder", "foreign read", "convert", nhdr_data_in_other_folder, "outside its own folder"),
    Case("mhd-sibling-symlink-out", "foreign read", "convert", mha_sibling_symlink_out, "outside its own folder"),
    Case("mha-memory-bomb", "memory bomb", "convert", mha_memory_bomb, "declares"),
    Case("nrrd-over-size-limit", "memory bomb", "translate", nrrd_over_limit, "more than the limit"),
    Case("png-decompression-bomb", "memory bomb", "report", png_bomb, "more pixels than the limit"),
    Case("dicom-zip-bomb", "memory bomb", "convert", dicom_zip_bomb, "compression ratio"),
    Case("dicom-zip-too-many-files", "memory bomb", "info", dicom_zip_too_many_files, "holds 3 files"),
    Case("dicom-absurd-frames", "memory bomb", "convert", dicom_absurd_frames, "more than the limit"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_input(case: Case, tmp_path: Path, rel_weights: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, rel_weights, monkeypatch, capsys)
