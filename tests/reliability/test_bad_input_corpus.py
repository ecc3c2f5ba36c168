"""A bad-input corpus, generated at test time, run through every command of the CLI in-process.

Each case must end with a non-zero exit code, exactly one ``error:`` line on stderr that names the
problem, no traceback, no partial output (the output folder lists exactly what it listed before) and
byte-identical inputs (sha256 of the whole input tree before and after). Faults that a test cannot
cause for real as root (a read-only file system, a full disk) are injected by making the OS call fail
with the errno the kernel would return.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rel_helpers import (
    dicom_series,
    header_only_nifti,
    listing,
    mri_volume,
    nifti,
    pydicom_testfile,
    tree_hash,
)

from medm2g_cli.main import run

FAST = ["--steps", "2", "--device", "cpu"]


@dataclass
class Case:
    """One bad input: ``build(ctx)`` writes the inputs under ``ctx.d`` and returns the argv."""

    id: str
    group: str
    command: str
    build: Callable[[SimpleNamespace], list[str]]
    expect: str  # a fragment the error line must contain (lower case)


def _mri(ctx: SimpleNamespace, name: str = "t1.nii.gz", data: np.ndarray | None = None) -> Path:
    return nifti(ctx.d / name, mri_volume() if data is None else data)


def _translate(ctx: SimpleNamespace, inp: Path, out: str = "o.nii.gz", direction: str = "t1-t2", *extra: str) -> list[str]:
    return ["translate", direction, str(inp), "-o", str(ctx.out / out), "--weights", str(ctx.w), *FAST, *extra]


def _convert(ctx: SimpleNamespace, inp: Path, out: str = "o.nii.gz", *extra: str) -> list[str]:
    return ["convert", str(inp), str(ctx.out / out), *extra]


def _weights_copy(ctx: SimpleNamespace) -> Path:
    w = ctx.d / "weights"
    shutil.copytree(ctx.w, w)
    return w


def _translate_with(ctx: SimpleNamespace, w: Path, *extra: str) -> list[str]:
    return ["translate", "t1-t2", str(_mri(ctx)), "-o", str(ctx.out / "o.nii.gz"), "--weights", str(w), *FAST, *extra]


# -- NIfTI ------------------------------------------------------------------------------------------


def truncated_gz(ctx):
    full = _mri(ctx, "full.nii.gz", mri_volume(shape=(32, 32, 16))).read_bytes()
    (ctx.d / "full.nii.gz").unlink()
    (ctx.d / "cut.nii.gz").write_bytes(full[: len(full) // 2])
    return _convert(ctx, ctx.d / "cut.nii.gz")


def truncated_nii(ctx):
    full = _mri(ctx, "full.nii").read_bytes()
    (ctx.d / "full.nii").unlink()
    (ctx.d / "cut.nii").write_bytes(full[:600])
    return _translate(ctx, ctx.d / "cut.nii")


def garbage_nii(ctx):
    (ctx.d / "noise.nii.gz").write_bytes(np.random.default_rng(0).bytes(2048))
    return ["info", str(ctx.d / "noise.nii.gz")]


def gzip_of_garbage(ctx):
    (ctx.d / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 40))
    return _convert(ctx, ctx.d / "junk.nii.gz")


def memory_bomb_nii(ctx):
    return _convert(ctx, header_only_nifti(ctx.d / "bomb.nii", (30000, 30000, 30000)))


def memory_bomb_gz(ctx):
    return _translate(ctx, header_only_nifti(ctx.d / "bomb.nii.gz", (20000, 20000, 20000)))


def zero_axis(ctx):
    return _convert(ctx, header_only_nifti(ctx.d / "empty.nii", (16, 0, 4)))


def nan_voxels(ctx):
    v = mri_volume()
    v[3:6, 3:6, 1] = np.nan
    return _translate(ctx, _mri(ctx, "nan.nii.gz", v))


def inf_voxels(ctx):
    v = mri_volume()
    v[0, 0, 0] = np.inf
    t2 = _mri(ctx, "t2.nii.gz")
    return ["synthesize", "-i", f"t1={_mri(ctx, 'inf.nii.gz', v)}", "-i", f"t2={t2}", "-t", "pd",
            "-o", str(ctx.out / "pd.nii.gz"), "--weights", str(ctx.w), *FAST]


def two_d_for_translate(ctx):
    return _translate(ctx, _mri(ctx, "slice.nii.gz", mri_volume()[:, :, 0]))


def four_d_for_translate(ctx):
    return _translate(ctx, _mri(ctx, "dwi.nii.gz", np.stack([mri_volume(s) for s in range(3)], axis=-1)))


def five_d(ctx):
    return _convert(ctx, _mri(ctx, "five.nii.gz", np.zeros((4, 4, 4, 2, 2), np.float32)))


def ct_nifti_for_mri(ctx):
    hu = np.full((16, 16, 4), -1000.0, np.float32)
    hu[4:12, 4:12] = 40.0
    return _translate(ctx, _mri(ctx, "ct.nii.gz", hu))


def directory_named_nifti(ctx):
    (ctx.d / "scan.nii.gz").mkdir()
    return _convert(ctx, ctx.d / "scan.nii.gz")


def dangling_symlink(ctx):
    os.symlink(ctx.d / "gone.nii.gz", ctx.d / "link.nii.gz")
    return ["info", str(ctx.d / "link.nii.gz")]


def unknown_suffix(ctx):
    (ctx.d / "scan.xyz").write_bytes(b"\0" * 64)
    return _convert(ctx, ctx.d / "scan.xyz")


# -- DICOM ------------------------------------------------------------------------------------------


def dicom_no_pixels(ctx):
    return _convert(ctx, dicom_series(ctx.d / "s", edit=lambda ds, i: delattr(ds, "PixelData")))


def dicom_jpegls(ctx):
    # SimpleITK's GDCM decodes JPEG-LS when it is there; take it away, as in a build without it,
    # so pydicom has to say that it has no decoder.
    import medm2g_cli.io.dicom as dicom_io

    if hasattr(dicom_io, "_read_pixels_itk"):
        ctx.mp.setattr(dicom_io, "_read_pixels_itk", lambda *a, **k: None)
    # and pydicom's JPEG-LS plugin (pyjpegls, which highdicom installs) as if it were not there
    # (pydicom registers its plugins when pydicom.pixels is first imported, so an earlier test may
    # already have found it: take it out of the decoder's registry too).
    ctx.mp.setitem(sys.modules, "jpeg_ls", None)
    from pydicom.pixels.decoders import JPEGLSLosslessDecoder as dec

    ctx.mp.setattr(dec, "_available", {k: v for k, v in dec._available.items() if k != "pyjpegls"})
    ctx.mp.setattr(dec, "_unavailable", {**dec._unavailable, "pyjpegls": ("pyjpegls>=1.2",)})
    src = pydicom_testfile("MR_small_jpeg_ls_lossless.dcm")
    (ctx.d / "s").mkdir()
    shutil.copy(src, ctx.d / "s" / "im1.dcm")
    return _convert(ctx, ctx.d / "s")


def dicom_duplicate_positions(ctx):
    return _convert(ctx, dicom_series(ctx.d / "s", positions=[[0, 0, 0], [0, 0, 5], [0, 0, 5], [0, 0, 10]]))


def dicom_missing_slice(ctx):
    return _convert(ctx, dicom_series(ctx.d / "s", positions=[[0, 0, 0], [0, 0, 5], [0, 0, 15], [0, 0, 20]]))


def dicom_mixed_series(ctx):
    dicom_series(ctx.d / "s", n=2)
    dicom_series(ctx.d / "s", name="MR_small.dcm", n=2)
    return _convert(ctx, ctx.d / "s")


def dicom_gantry_tilt(ctx):
    return _convert(ctx, dicom_series(ctx.d / "s", positions=[[0, 2.0 * i, 5.0 * i] for i in range(4)]))


def dicom_truncated(ctx):
    dicom_series(ctx.d / "s", n=1)
    f = next((ctx.d / "s").iterdir())
    f.write_bytes(f.read_bytes()[:2000])
    return _convert(ctx, ctx.d / "s")


def dicom_truncated_pixels(ctx):
    dicom_series(ctx.d / "s", n=2)
    f = sorted((ctx.d / "s").iterdir())[0]
    f.write_bytes(f.read_bytes()[:-5000])
    return _convert(ctx, ctx.d / "s")


def dicom_bad_zip(ctx):
    (ctx.d / "series.zip").write_bytes(b"PK\x03\x04" + bytes(100))
    return _convert(ctx, ctx.d / "series.zip")


def dicom_empty_folder(ctx):
    (ctx.d / "empty").mkdir()
    (ctx.d / "empty" / "notes.txt").write_text("no images here\n")
    return _convert(ctx, ctx.d / "empty", "o.nii.gz")


def dicom_ct_for_mri(ctx):
    return _translate(ctx, dicom_series(ctx.d / "ct", n=3), "mr_out", "mri2ct")


def dicom_absurd_rows(ctx):
    def edit(ds, i):
        ds.Rows, ds.Columns = 60000, 60000
    return _convert(ctx, dicom_series(ctx.d / "s", n=2, edit=edit))


# -- pictures ---------------------------------------------------------------------------------------


def _png(ctx, mode: str) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p = ctx.d / f"cxr_{mode}.png"
    im.save(p)
    return p


def png_rgb(ctx):
    return ["report", str(_png(ctx, "RGB")), "--weights", str(ctx.w), *FAST]


def png_palette(ctx):
    return ["report", str(_png(ctx, "P")), "--weights", str(ctx.w), *FAST, "-o", str(ctx.out / "r.json")]


def png_truncated(ctx):
    p = _png(ctx, "RGB")
    p.write_bytes(p.read_bytes()[:60])
    return ["report", str(p), "--weights", str(ctx.w), *FAST]


def png_for_translate(ctx):
    from PIL import Image

    Image.fromarray(np.full((32, 32), 100, np.uint8), "L").save(ctx.d / "xray.png")
    return _translate(ctx, ctx.d / "xray.png")


# -- text -------------------------------------------------------------------------------------------


def _generate(ctx, prompt: str) -> list[str]:
    return ["generate", "xray", "--prompt", prompt, "-o", str(ctx.out / "gen"), "--weights", str(ctx.w), *FAST]


def prompt_empty(ctx):
    return _generate(ctx, "")


def prompt_blank(ctx):
    return _generate(ctx, " \t\n ")


def prompt_over_long(ctx):
    return _generate(ctx, "cardiomegaly " * 20000)


def prompt_not_utf8(ctx):
    # What Python makes of undecodable argv bytes (surrogateescape): lone surrogates.
    return _generate(ctx, b"Pleural effusion \xff\xfe".decode("utf-8", "surrogateescape"))


def list_file_not_utf8(ctx):
    _mri(ctx, "a.nii.gz")
    (ctx.d / "cases.txt").write_bytes(b"a.nii.gz\n\xff\xfe\xfa.nii.gz\n")
    return ["translate", "t1-t2", str(ctx.d / "cases.txt"), "-o", str(ctx.out / "batch"), "--weights", str(ctx.w), *FAST]


def list_file_missing_case(ctx):
    _mri(ctx, "a.nii.gz")
    (ctx.d / "cases.txt").write_text("a.nii.gz\nb.nii.gz\n")
    return ["translate", "t1-t2", str(ctx.d / "cases.txt"), "-o", str(ctx.out / "batch"), "--weights", str(ctx.w), *FAST]


# -- outputs ----------------------------------------------------------------------------------------


def out_exists(ctx):
    (ctx.out / "o.nii.gz").write_bytes(b"previous result")
    return _convert(ctx, _mri(ctx))


def out_folder_missing(ctx):
    return ["convert", str(_mri(ctx)), str(ctx.out / "no" / "such" / "o.nii.gz")]


def out_parent_is_file(ctx):
    (ctx.out / "afile").write_text("x")
    return ["convert", str(_mri(ctx)), str(ctx.out / "afile" / "o.nii.gz")]


def out_read_only(ctx):
    os.chmod(ctx.out, 0o555)
    if os.geteuid() == 0:  # root ignores mode bits: fail the temp-file creation as a read-only mount would
        import tempfile

        real = tempfile.mkstemp

        def ro(*a, **k):
            if Path(k.get("dir", "")).resolve() == ctx.out.resolve():
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real(*a, **k)

        ctx.mp.setattr(tempfile, "mkstemp", ro)
    return _convert(ctx, _mri(ctx))


def _disk_full_on_publish(ctx) -> None:
    """Every way an output is moved into place (replace, no-replace rename, hard link) fails with ENOSPC."""
    from medm2g_cli.io import outputs

    for owner, name in ((os, "replace"), (os, "link"), (outputs, "_renameat2")):
        real = getattr(owner, name)

        def full(src, dst, *a, _real=real, **k):
            if Path(dst).parent.resolve() == ctx.out.resolve():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _real(src, dst, *a, **k)

        ctx.mp.setattr(owner, name, full)


def disk_full_on_replace(ctx):
    _disk_full_on_publish(ctx)
    return _convert(ctx, _mri(ctx))


def disk_full_mid_dicom_series(ctx):
    from pydicom.dataset import Dataset

    real = Dataset.save_as
    written = {"n": 0}

    def save_as(self, filename, *a, **k):
        written["n"] += 1
        if written["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, filename, *a, **k)

    ctx.mp.setattr(Dataset, "save_as", save_as)
    return _convert(ctx, _mri(ctx), "series_dcm", "--format", "dicom", "--modality", "mri")


def disk_full_translate(ctx):
    _disk_full_on_publish(ctx)
    return _translate(ctx, _mri(ctx))


# -- weights ----------------------------------------------------------------------------------------


def weights_missing_component(ctx):
    w = _weights_copy(ctx)
    shutil.rmtree(w / "unet_t2" if (w / "unet_t2").exists() else w / "unet_mri")
    return _translate_with(ctx, w)


def weights_missing_file(ctx):
    w = _weights_copy(ctx)
    (w / "vae_mri" / "config.json").unlink()
    return _translate_with(ctx, w)


def weights_hash_mismatch(ctx):
    w = _weights_copy(ctx)
    f = w / "unet_mri" / "diffusion_pytorch_model.safetensors"
    b = bytearray(f.read_bytes())
    b[-5] ^= 0xFF  # one weight changed: still a loadable file, but not the published one
    f.write_bytes(bytes(b))
    return _translate_with(ctx, w)


class _Trap:
    """Unpickling this would create the marker file: proof that a pickle was (not) loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def weights_pickle(ctx):
    w = _weights_copy(ctx)
    ctx.marker = ctx.tmp / "PICKLE_WAS_LOADED"
    (w / "unet_mri" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Trap(str(ctx.marker))))
    return _translate_with(ctx, w, "--skip-verify")


def weights_no_meta(ctx):
    w = _weights_copy(ctx)
    (w / "medm2g.json").unlink()
    return _translate_with(ctx, w)


def weights_bad_meta(ctx):
    w = _weights_copy(ctx)
    (w / "medm2g.json").write_text('{"modalities": ["text", ')
    return _translate_with(ctx, w)


def weights_corrupt_safetensors_skip_verify(ctx):
    w = _weights_copy(ctx)
    (w / "vae_mri" / "diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 64)
    return _translate_with(ctx, w, "--skip-verify")


def weights_missing_branch(ctx):
    w = _weights_copy(ctx)
    meta = json.loads((w / "medm2g.json").read_text())
    meta["modalities"] = ["text", "xray"]
    (w / "medm2g.json").write_text(json.dumps(meta))
    return _translate_with(ctx, w)


# -- prepared data (manifests) ----------------------------------------------------------------------


def _prepared(ctx, rel: str) -> Path:
    root = ctx.d / "prepared"
    (root / "slices").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"format": 1, "name": "phantom", "modalities": ["mri"],
                                                   "keys": ["t1", "t2"], "flows": ["t1-t2"]}))
    (root / "samples.jsonl").write_text(json.dumps({"id": "s0", "subject": "a", "split": "test",
                                                    "files": {"t1": rel, "t2": rel}}) + "\n")
    return root


def manifest_dotdot(ctx):
    root = _prepared(ctx, "../../../etc/passwd")
    return ["evaluate", "--dataset", "ixi", "--task", "mri-synthesis", "--data", str(root), "--weights", str(ctx.w),
            "-o", str(ctx.out / "ev"), "--steps", "2", "--max-subjects", "1"]


def manifest_absolute(ctx):
    root = _prepared(ctx, "/etc/passwd")
    return ["pretrain", "--data", str(root), "-o", str(ctx.out / "run"), "--preset", "tiny", "--steps", "1", "--cpu"]


def manifest_symlink_out(ctx):
    secret = ctx.tmp / "secret.png"
    secret.write_bytes(b"outside")
    root = _prepared(ctx, "slices/x.png")
    os.symlink(secret, root / "slices" / "x.png")
    return ["pretrain", "--data", str(root), "-o", str(ctx.out / "run"), "--preset", "tiny", "--steps", "1", "--cpu"]


# -- other commands ---------------------------------------------------------------------------------


def register_corrupt_moving(ctx):
    (ctx.d / "moving.nii.gz").write_bytes(b"\x1f\x8b" + bytes(50))
    return ["register", str(_mri(ctx)), str(ctx.d / "moving.nii.gz"), "-o", str(ctx.out / "r.nii.gz")]


def synthesize_other_grid(ctx):
    t2 = nifti(ctx.d / "t2.nii.gz", mri_volume(shape=(12, 16, 4)))
    return ["synthesize", "-i", f"t1={_mri(ctx)}", "-i", f"t2={t2}", "-t", "pd", "-o", str(ctx.out / "pd.nii.gz"),
            "--weights", str(ctx.w), *FAST]


def unknown_direction(ctx):
    return _translate(ctx, _mri(ctx), "o.nii.gz", "mri2xray")


def prepare_missing_source(ctx):
    return ["prepare", "phantom", str(ctx.d / "nowhere"), "-o", str(ctx.out / "prep")]


CASES: list[Case] = [
    Case("nifti-truncated-gz", "corrupt NIfTI", "convert", truncated_gz, "nifti"),
    Case("nifti-truncated-raw", "corrupt NIfTI", "translate", truncated_nii, "cut.nii"),
    Case("nifti-random-bytes", "corrupt NIfTI", "info", garbage_nii, "noise.nii.gz"),
    Case("nifti-gzip-of-garbage", "corrupt NIfTI", "convert", gzip_of_garbage, "junk.nii.gz"),
    Case("nifti-memory-bomb-raw", "absurd header", "convert", memory_bomb_nii, "bomb.nii"),
    Case("nifti-memory-bomb-gz", "absurd header", "translate", memory_bomb_gz, "bomb.nii.gz"),
    Case("nifti-zero-sized-axis", "absurd header", "convert", zero_axis, "empty"),
    Case("nifti-nan-voxels", "bad voxel values", "translate", nan_voxels, "nan"),
    Case("nifti-inf-voxels", "bad voxel values", "synthesize", inf_voxels, "inf"),
    Case("nifti-2d-for-3d", "wrong dimensionality", "translate", two_d_for_translate, "3-d"),
    Case("nifti-4d-for-3d", "wrong dimensionality", "translate", four_d_for_translate, "4-d"),
    Case("nifti-5d", "wrong dimensionality", "convert", five_d, "5-d"),
    Case("nifti-ct-for-mri", "wrong modality", "translate", ct_nifti_for_mri, "ct"),
    Case("path-is-directory", "unreadable file", "convert", directory_named_nifti, "is a folder"),
    Case("path-dangling-symlink", "unreadable file", "info", dangling_symlink, "does not exist"),
    Case("path-unknown-format", "unreadable file", "convert", unknown_suffix, "unknown format"),
    Case("dicom-no-pixel-data", "DICOM", "convert", dicom_no_pixels, "pixel data"),
    Case("dicom-jpeg-ls-no-decoder", "DICOM", "convert", dicom_jpegls, "decode"),
    Case("dicom-duplicate-positions", "DICOM geometry", "convert", dicom_duplicate_positions, "same position"),
    Case("dicom-missing-slice", "DICOM geometry", "convert", dicom_missing_slice, "uneven slice spacing"),
    Case("dicom-mixed-series", "DICOM", "convert", dicom_mixed_series, "2 series"),
    Case("dicom-gantry-tilt", "DICOM geometry", "convert", dicom_gantry_tilt, "tilt"),
    Case("dicom-truncated-file", "DICOM", "convert", dicom_truncated, "dicom"),
    Case("dicom-truncated-pixels", "DICOM", "convert", dicom_truncated_pixels, "pixel data"),
    Case("dicom-bad-zip", "DICOM", "convert", dicom_bad_zip, "zip"),
    Case("dicom-folder-without-images", "DICOM", "convert", dicom_empty_folder, "no dicom images"),
    Case("dicom-ct-for-mri", "wrong modality", "translate", dicom_ct_for_mri, "ct"),
    Case("dicom-absurd-rows", "absurd header", "convert", dicom_absurd_rows, "more than the limit"),
    Case("png-rgb-colour", "pictures", "report", png_rgb, "colour"),
    Case("png-palette-colour", "pictures", "report", png_palette, "colour"),
    Case("png-truncated", "pictures", "report", png_truncated, "cxr_rgb.png"),
    Case("png-for-volume-command", "wrong dimensionality", "translate", png_for_translate, "3-d"),
    Case("prompt-empty", "text", "generate", prompt_empty, "empty"),
    Case("prompt-blank", "text", "generate", prompt_blank, "empty"),
    Case("prompt-over-long", "text", "generate", prompt_over_long, "too long"),
    Case("prompt-not-utf8", "text", "generate", prompt_not_utf8, "utf-8"),
    Case("list-file-not-utf8", "text", "translate", list_file_not_utf8, "utf-8"),
    Case("list-file-missing-case", "text", "translate", list_file_missing_case, "b.nii.gz"),
    Case("output-exists", "outputs", "convert", out_exists, "--overwrite"),
    Case("output-folder-missing", "outputs", "convert", out_folder_missing, "does not exist"),
    Case("output-parent-is-file", "outputs", "convert", out_parent_is_file, "afile"),
    Case("output-read-only", "outputs", "convert", out_read_only, "o.nii.gz"),
    Case("disk-full-on-rename", "full disk", "convert", disk_full_on_replace, "no space left"),
    Case("disk-full-mid-dicom-series", "full disk", "convert", disk_full_mid_dicom_series, "no space left"),
    Case("disk-full-translate", "full disk", "translate", disk_full_translate, "no space left"),
    Case("weights-missing-component", "weights", "translate", weights_missing_component, "lacks"),
    Case("weights-missing-file", "weights", "translate", weights_missing_file, "config.json"),
    Case("weights-hash-mismatch", "weights", "translate", weights_hash_mismatch, "sha256 mismatch"),
    Case("weights-pickle", "weights", "translate", weights_pickle, "pickle"),
    Case("weights-no-medm2g-json", "weights", "translate", weights_no_meta, "medm2g.json"),
    Case("weights-medm2g-json-corrupt", "weights", "translate", weights_bad_meta, "medm2g.json"),
    Case("weights-corrupt-safetensors-skip-verify", "weights", "translate", weights_corrupt_safetensors_skip_verify, "vae_mri"),
    Case("weights-missing-branch", "weights", "translate", weights_missing_branch, "no mri branch"),
    Case("manifest-dotdot", "manifest", "evaluate", manifest_dotdot, "leaves the dataset folder"),
    Case("manifest-absolute", "manifest", "pretrain", manifest_absolute, "absolute"),
    Case("manifest-symlink-out", "manifest", "pretrain", manifest_symlink_out, "outside"),
    Case("register-corrupt-moving", "corrupt NIfTI", "register", register_corrupt_moving, "moving.nii.gz"),
    Case("synthesize-other-grid", "geometry", "synthesize", synthesize_other_grid, "--register"),
    Case("translate-unknown-direction", "options", "translate", unknown_direction, "unknown direction"),
    Case("prepare-missing-source", "options", "prepare", prepare_missing_source, "nowhere"),
]


def test_corpus_is_large_and_covers_every_input_command() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert {c.command for c in CASES} >= {"info", "convert", "register", "prepare", "generate", "report",
                                          "translate", "synthesize", "pretrain", "evaluate"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, rel_weights: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    ctx = SimpleNamespace(d=d, out=out, w=rel_weights, mp=monkeypatch, tmp=tmp_path, marker=None)
    argv = case.build(ctx)
    assert argv[0] == case.command
    before_in, before_out = tree_hash(d), listing(out)
    with pytest.raises(SystemExit) as exc:
        run(argv)
    monkeypatch.undo()
    os.chmod(out, 0o755)
    cap = capsys.readouterr()
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    # Every case is the user's doing: a MedM2GError (exit 2), never the "unexpected ..." fallback.
    assert exc.value.code == 2, cap.err
    assert "Traceback" not in cap.err + cap.out
    assert len(errors) == 1, cap.err
    assert case.expect in errors[0].lower(), errors[0]
    assert "unexpected" not in errors[0] and "out of memory" not in errors[0], errors[0]
    assert tree_hash(d) == before_in, "an input was modified"
    assert listing(out) == before_out, f"partial output left: {listing(out)}"
    if ctx.marker is not None:
        assert not Path(ctx.marker).exists(), "a pickle was unpickled"
    if os.environ.get("MEDM2G_CORPUS_LOG"):  # the README's summary table is built from this log
        with open(os.environ["MEDM2G_CORPUS_LOG"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": case.id, "group": case.group, "command": case.command,
                                 "exit": exc.value.code, "error": errors[0]}) + "\n")


def test_shared_weights_untouched(rel_weights: Path) -> None:
    """The session's weights folder (used read-only by every case) still verifies."""
    from medm2g_cli.engine.io import verify_folder

    assert verify_folder(rel_weights) == {"missing": [], "mismatched": [], "unexpected": [], "pickled": []}
