"""Checks on a MetaImage (.mha/.mhd) or NRRD (.nrrd/.nhdr) header before ITK reads its pixels.

Two things a header can make ITK do that a user never asked for:

- read another file as pixel data: ``ElementDataFile = /etc/passwd`` or ``data file: ../../x`` —
  the data file must be the header file itself or a plain file in the header's own folder;
- allocate without bound: ``DimSize = 3000 3000 3000`` with 4 bytes of data asks for 108 GB —
  the declared size must fit the data that is there and the limits of :mod:`.limits`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .limits import check_declared, check_voxels

_HEAD_BYTES = 1 << 16  # MetaImage and NRRD headers are a few hundred bytes


def _header_fields(path: Path) -> tuple[dict[str, str], bool]:
    """The header's fields (lower-case keys) and whether the file is NRRD."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
        at_eof = not fh.read(1)
    text = head.decode("latin-1")
    nrrd = text.startswith("NRRD")
    fields: dict[str, str] = {}
    ended = False
    for line in text.splitlines()[1:] if nrrd else text.splitlines():
        if nrrd:
            if not line.strip():
                ended = True  # a blank line ends a NRRD header; attached data follow
                break
            if line.startswith("#") or ":" not in line or ":=" in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower().replace(" ", "")] = value.strip()
        else:
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                ended = True  # MetaIO: ElementDataFile is the last header line
                break
    if not ended and not at_eof:
        raise InputError(f"'{path.name}' has no end of header in its first {_HEAD_BYTES // 1024} KiB",
                         "the file is not a valid MetaImage/NRRD file; re-export it")
    return fields, nrrd


def _data_file(path: Path, value: str | None) -> Path:
    """The file holding the pixels: the header itself, or a sibling plain file named by it."""
    if value is None or value.upper() == "LOCAL":
        return path
    hint = "keep the data file next to its header and name it there without a folder"
    if value.upper().startswith("LIST") or "%" in value:
        raise InputError(f"'{path.name}' spreads its data over several files ('{value[:60]}')", hint)
    name = value.strip()
    folder = path.resolve().parent
    target = (path.parent / name).resolve()
    if Path(name).name != name or name in (".", "..") or target.parent != folder:
        raise InputError(f"'{path.name}' names the data file '{name[:80]}' outside its own folder", hint)
    if not target.is_file():
        raise InputError(f"data file '{name[:80]}' of '{path.name}' is missing or not a file",
                         "copy it next to the header (a .mhd/.nhdr needs its .raw/.zraw beside it)")
    return target


def _component_bytes(pixel_id: int) -> int:
    """Bytes per pixel component of a SimpleITK pixel id ("32-bit float", "complex of 64-bit float" ...)."""
    import SimpleITK as sitk  # noqa: N813

    name = sitk.GetPixelIDValueAsString(pixel_id)
    bits = re.search(r"(\d+)-bit", name)
    size = int(bits.group(1)) // 8 if bits else 8
    return size * (2 if "complex" in name else 1)


def check_itk_header(path: Path, reader: Any) -> None:
    """Refuse a header naming a foreign data file or declaring more data than it has or than the
    limits allow. ``reader`` is the ``sitk.ImageFileReader`` for ``path`` (its ImageIO already set)."""
    fields, nrrd = _header_fields(path)
    data = _data_file(path, fields.get("datafile") if nrrd else fields.get("elementdatafile"))
    reader.ReadImageInformation()  # the header only: sizes and pixel type, no allocation
    comps = int(reader.GetNumberOfComponents() or 1)
    shape = [int(s) for s in reader.GetSize()] + ([comps] if comps > 1 else [])
    itemsize = _component_bytes(reader.GetPixelID())
    n = check_voxels(path.name, shape, itemsize)
    have = data.stat().st_size
    if nrrd:
        encoding = fields.get("encoding", "raw").lower()
        if encoding in ("raw",):
            check_declared(path.name, n * itemsize, have)
        elif encoding in ("gzip", "gz"):
            check_declared(path.name, n * itemsize, have, compressed=True)
        elif encoding in ("hex",):
            check_declared(path.name, n * itemsize * 2, have)
        elif encoding in ("ascii", "text", "txt"):
            check_declared(path.name, n, have)  # at least one character per value
        # bzip2 and others: only the absolute limit above
    else:
        compressed = fields.get("compresseddata", "false").lower() in ("true", "1", "yes")
        check_declared(path.name, n * itemsize, have, compressed=compressed)
