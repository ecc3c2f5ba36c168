"""Size limits on what a header may make medm2g allocate, in one place, raisable by one variable.

A hostile or corrupt header (a MetaImage claiming 3000^3 floats with 4 bytes of data, a DICOM with
65535 x 65535 x 10000 frames, a zip bomb, a PNG decompression bomb) must not make a reader allocate
more than the machine has. Every reader checks the declared size here *before* it allocates:

- :func:`max_voxels`: the most voxels (pixels x slices x frames x components) one image may have.
  Default 2**30 (about 1.07e9): a 512 x 512 x 4096 CT; twice a 512 x 512 x 2000 CT.
- :func:`max_bytes`: the most decoded bytes, ``max_voxels * 8`` (8 GiB by default: the widest
  element, float64, of the largest image); also the cap on a DICOM zip's total uncompressed size.
- :func:`max_zip_members`: the most files in a DICOM zip (100 000 by default).

``MEDM2G_MAX_VOXELS`` raises (or lowers) all of them together, for genuinely huge studies; the
byte and member caps scale with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError

ENV = "MEDM2G_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 1 << 30
_DEFAULT_ZIP_MEMBERS = 100_000
# Deflate cannot expand data by more than ~1032:1; a member (or file) claiming more is crafted.
MAX_DEFLATE_RATIO = 1032
HINT = f"the header is corrupt or hostile; if the image really is this large, set {ENV} to a larger voxel count"


def max_voxels() -> int:
    """The voxel cap: ``$MEDM2G_MAX_VOXELS`` or 2**30."""
    raw = os.environ.get(ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(float(raw)) if ("e" in raw.lower() or "." in raw) else int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{ENV}='{os.environ.get(ENV)}' is not a positive number", f"e.g. {ENV}=4000000000")
    return value


def max_bytes() -> int:
    """The decoded-bytes cap: ``max_voxels() * 8``."""
    return max_voxels() * 8


def max_zip_members() -> int:
    """The most members a DICOM zip may hold (scales with ``max_voxels``)."""
    return max(1, _DEFAULT_ZIP_MEMBERS * max_voxels() // DEFAULT_MAX_VOXELS)


def _product(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def check_voxels(name: str, shape: Iterable[int], itemsize: int = 1) -> int:
    """Refuse an image of ``shape`` (any number of axes, components included) over the caps.

    Returns the number of voxels. ``name`` is the file name for the message.
    """
    dims = [int(s) for s in shape]
    n = _product(dims)
    if n > max_voxels() or n * max(1, int(itemsize)) > max_bytes():
        raise InputError(
            f"'{name}' declares {'x'.join(map(str, dims))} = {n:,} voxels ({n * max(1, int(itemsize)) / 2**30:.3g} GiB), "
            f"more than the limit of {max_voxels():,}", HINT)
    return n


def check_dicom(name: str, ds: Any, files: int = 1) -> int:
    """:func:`check_voxels` for a DICOM header: Rows x Columns x (NumberOfFrames x ``files``) x
    SamplesPerPixel at BitsAllocated, as declared (nothing decoded yet)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1) * files
    shape = (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), frames, int(ds.get("SamplesPerPixel") or 1))
    return check_voxels(name, shape, max(1, int(ds.get("BitsAllocated") or 16) // 8))


def check_declared(name: str, need: int, have: int, *, compressed: bool = False) -> None:
    """Refuse a header that declares ``need`` data bytes when its data file holds only ``have``
    (``compressed``: deflate, which expands at most :data:`MAX_DEFLATE_RATIO` times)."""
    room = have * MAX_DEFLATE_RATIO if compressed else have
    if need > room:
        raise InputError(
            f"'{name}' declares {need:,} bytes of image data ({need / 2**30:.3g} GiB) but its data holds only "
            f"{have:,} bytes", "the header is corrupt or the file is truncated; re-export it")


# A member smaller than this may have any ratio (a blank DICOM slice compresses ~1000:1 legitimately).
_RATIO_FLOOR = 1 << 20
_CHUNK = 1 << 20


def check_zip(name: str, members: list[Any]) -> None:
    """Refuse a zip (``zipfile.ZipInfo`` members, folders excluded) before extracting anything:
    too many members, too many uncompressed bytes in all, or a member expanding more than deflate can."""
    if len(members) > max_zip_members():
        raise InputError(f"'{name}' holds {len(members):,} files, more than the limit of {max_zip_members():,}", HINT)
    total = sum(int(m.file_size) for m in members)
    if total > max_bytes():
        raise InputError(f"'{name}' expands to {total:,} bytes ({total / 2**30:.3g} GiB), more than the limit of "
                         f"{max_bytes():,}", HINT)
    for m in members:
        if m.file_size > _RATIO_FLOOR and m.file_size > max(1, m.compress_size) * MAX_DEFLATE_RATIO:
            raise InputError(f"'{name}' member '{Path(m.filename).name[:60]}' claims a compression ratio over "
                             f"{MAX_DEFLATE_RATIO}:1 (a zip bomb)", "re-create the zip from the DICOM files")


def extract_member(zf: Any, info: Any, dest: Path, name: str) -> int:
    """Extract zip member ``info`` of ``zf`` (archive ``name``) to ``dest`` in chunks, never more
    bytes than its header declares; returns the bytes written. A damaged member (CRC error,
    truncated data, encryption, unknown compression) becomes :class:`InputError`."""
    import zipfile
    import zlib

    done = 0
    try:
        with zf.open(info) as src, open(dest, "wb") as dst:
            while chunk := src.read(_CHUNK):
                done += len(chunk)
                if done > info.file_size:
                    raise InputError(f"a member of '{name}' is larger than its zip header says", "re-create the zip")
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InputError(f"cannot extract '{name}': {' '.join(str(exc).split())[:120] or type(exc).__name__}",
                         "the zip is damaged, encrypted or uses an unsupported compression; re-create it") from exc
    return done
