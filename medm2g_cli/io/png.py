"""PNG/JPEG pictures: 2-D images in, windowed slice folders out (and back with a reference grid).

Picture arrays follow the DICOM voxel convention used everywhere in io/: ``array[i, j]`` with
i = column, j = row, as a one-slice volume ``(columns, rows, 1)``. A picture has no patient
geometry, so its affine is unit spacing in LPS (as an untagged DICOM Secondary Capture).

Slice folders are displayed in radiological convention on the canonical (RAS) grid: anterior /
superior up, patient right on the viewer's left. A ``slices.json`` sidecar records the axis, the
window and the bit depth so a folder can be turned back into a volume on a reference grid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FormatError, GeometryError, InputError
from ..modalities import CT_WINDOWS
from .atomic import atomic_dir, atomic_path
from .formats import PICTURE_SUFFIXES
from .limits import HINT, check_voxels, max_voxels
from .orientation import AXES, to_canonical
from .volume import Volume

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SIDECAR = "slices.json"


def open_picture(path: str | Path) -> Any:
    """``PIL.Image.open`` under medm2g's one size limit (:mod:`.limits`), for every picture reader.

    The size comes from the file's header and is checked before any pixel is decoded (and before
    any RGB/palette conversion copies them); Pillow's own decompression-bomb guard is set to the same
    limit and its error or warning becomes :class:`InputError`. Use as ``with open_picture(p) as im``.
    Other failures (not an image, truncated) raise as from ``Image.open``.
    """
    import warnings

    from PIL import Image

    path = Path(path)
    cap = max_voxels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, cap
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"'{path.name}' declares more pixels than the limit of {cap:,}", HINT) from exc
    try:
        check_voxels(path.name, (im.width, im.height, len(im.getbands())))
    except InputError:
        im.close()
        raise
    return im


def read_picture(path: str | Path, *, modality: str | None = None) -> Volume:
    """Read a PNG/JPEG (8- or 16-bit greyscale). RGB/palette images are converted to luminance
    with a note in ``meta['notes']``; colour content that is not grey is refused."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    notes: list[str] = []
    try:
        with open_picture(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                px = np.asarray(im).astype(np.uint16)
            elif mode in ("L", "1"):
                px = np.asarray(im.convert("L"), dtype=np.uint8)
            elif mode == "I":
                px = np.asarray(im, dtype=np.int32)
                if px.size and px.min() >= 0 and px.max() <= 65535:
                    px = px.astype(np.uint16)
            elif mode == "F":
                px = np.asarray(im, dtype=np.float32)
            elif mode in ("RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr"):
                if _colour_spread(im.convert("RGB")) > 8:
                    raise FormatError(
                        f"'{path.name}' is a colour {mode} image",
                        "medm2g reads greyscale radiographs; export it as an 8- or 16-bit greyscale PNG")
                px = np.asarray(im.convert("L"), dtype=np.uint8)
                notes.append(f"{mode} image converted to 8-bit greyscale")
            else:
                raise FormatError(f"'{path.name}' has unsupported pixel mode {mode}", "export a greyscale PNG or JPEG")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read image '{path.name}': {' '.join(str(exc).split())[:140]}",
                         "pass a valid PNG or JPEG file") from exc
    arr = np.ascontiguousarray(px.T[:, :, None])
    return Volume(arr, LPS @ np.eye(4), modality, {"format": "picture", "path": str(path), "notes": notes,
                                                   "bits": 16 if px.dtype == np.uint16 else 8})


def _colour_spread(rgb_image: Any) -> int:
    """Largest distance of a channel from the pixel's grey mean, rounded down (0 for grey images).

    Computed as ``|3c - (r+g+b)| // 3`` in int16, so a large picture costs 2 bytes per pixel per
    temporary instead of float64 copies of the whole RGB array.
    """
    rgb = np.asarray(rgb_image, dtype=np.uint8)
    if not rgb.size:
        return 0
    total = rgb.sum(axis=2, dtype=np.int16)
    worst = 0
    for c in range(3):
        worst = max(worst, int(np.abs(3 * rgb[:, :, c].astype(np.int16) - total).max()))
    return worst // 3


def _quantise(plane: np.ndarray, window: tuple[float, float], bits: int) -> np.ndarray:
    lo, hi = float(window[0]), float(window[1])
    top = (1 << bits) - 1
    if hi <= lo:
        hi = lo + 1.0
    scaled = (np.clip(plane.astype(np.float64), lo, hi) - lo) / (hi - lo) * top
    return np.round(scaled).astype(np.uint16 if bits == 16 else np.uint8)


def _save_png(arr2d: np.ndarray, dest: Path) -> None:
    from PIL import Image

    # uint16 arrays become mode I;16, uint8 mode L (Pillow infers the mode from the dtype).
    im = Image.fromarray(np.ascontiguousarray(arr2d))
    im.save(str(dest), format="PNG")


def default_window(arr: np.ndarray) -> tuple[float, float]:
    """Robust display window: the 0.5-99.5 percentiles (min/max when flat)."""
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def resolve_window(spec: str | None, arr: np.ndarray | None = None, modality: str | None = None) -> tuple[float, float]:
    """A display window (low, high) from ``PRESET`` (a CT window name), ``auto`` or ``LOW,HIGH``.

    ``None``/``auto`` uses the CT ``soft-tissue`` window for CT and :func:`default_window` otherwise.
    """
    if spec is None or spec.strip().lower() == "auto":
        if modality == "ct" and spec is None:
            return CT_WINDOWS["soft-tissue"]
        if arr is None:
            raise ConfigError("--window auto needs the image", "pass --window LOW,HIGH")
        return default_window(arr)
    key = spec.strip().lower()
    if key in CT_WINDOWS:
        return CT_WINDOWS[key]
    parts = key.split(",")
    if len(parts) == 2:
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            lo = hi = float("nan")
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            return lo, hi
    raise ConfigError(f"invalid window '{spec}'",
                      f"use auto, LOW,HIGH (e.g. -160,240) or a preset: {', '.join(CT_WINDOWS)}")


def write_picture(vol: Volume, path: str | Path, *, window: tuple[float, float] | None = None, bits: int = 16,
                  overwrite: bool = False) -> Path:
    """Write a 2-D image (or one-slice volume) as a single greyscale PNG (``bits`` 8 or 16)."""
    path = Path(path)
    arr = np.asarray(vol.array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise FormatError(f"cannot write a {vol.shape} volume into one picture",
                          "give a folder as OUT to write one PNG per slice")
    if bits not in (8, 16):
        raise InputError(f"--bits {bits} is not supported", "use 8 or 16")
    img = _quantise(arr.T, window or (float(arr.min()), float(arr.max())), bits)
    with atomic_path(path, overwrite=overwrite) as tmp:
        _save_png(img, tmp)
    return path


def write_png_slices(vol: Volume, folder: str | Path, *, axis: str = "axial",
                     window: tuple[float, float] | None = None, bits: int = 16, overwrite: bool = False) -> Path:
    """Write one windowed PNG per slice along ``axis`` into ``folder`` (plus ``slices.json``)."""
    folder = Path(folder)
    if axis not in AXES:
        raise InputError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    if bits not in (8, 16):
        raise InputError(f"--bits {bits} is not supported", "use 8 or 16")
    arr = np.asarray(vol.array)
    if arr.ndim != 3:
        raise FormatError(f"cannot slice a {arr.ndim}-D array", "give a 3-D volume")
    canon, _ = to_canonical(vol)
    win = window or default_window(canon.array)
    ax = AXES[axis]
    n = canon.array.shape[ax]
    width = max(4, len(str(n - 1)))
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        for k in range(n):
            plane = np.take(canon.array, k, axis=ax)
            # Radiological display: rows run anterior/superior -> down, columns patient right -> left.
            img = _quantise(plane[::-1, ::-1].T, win, bits)
            _save_png(img, tmp / f"slice_{k:0{width}d}.png")
        sidecar = {"axis": axis, "window": [win[0], win[1]], "bits": bits, "n_slices": n,
                   "canonical_shape": list(canon.array.shape), "source_shape": list(arr.shape),
                   "modality": vol.modality}
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return folder


def read_png_folder(folder: str | Path, *, reference: Volume | None, modality: str | None = None,
                    axis: str | None = None) -> Volume:
    """Stack a folder of slice PNGs (file-name order) into a volume on ``reference``'s grid.

    Pictures carry no geometry, so ``reference`` is required. Values are mapped back through the
    window in ``slices.json`` when present (otherwise raw pixel values are kept).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError(f"no PNG/JPEG files in '{folder}'", "pass a folder of slice pictures")
    if reference is None:
        raise InputError(f"'{folder.name}' is a folder of pictures with no geometry",
                         "pass --reference VOLUME (the volume the slices came from) to give it a grid")
    side: dict[str, Any] = {}
    if (folder / SIDECAR).is_file():
        try:
            side = json.loads((folder / SIDECAR).read_text())
        except (OSError, json.JSONDecodeError):
            side = {}
    axis = axis or side.get("axis", "axial")
    if axis not in AXES:
        raise InputError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    canon_ref, undo = to_canonical(reference)
    ax = AXES[axis]
    planes: list[np.ndarray] = []
    for f in files:
        pic = read_picture(f).array[:, :, 0].T  # (rows, cols) as stored
        if not planes:
            check_voxels(folder.name, (*pic.shape, len(files)))  # the whole stack, before reading it
        planes.append(pic.T[::-1, ::-1])
    expect = list(canon_ref.array.shape)
    got_plane = planes[0].shape
    want_plane = tuple(s for i, s in enumerate(expect) if i != ax)
    if len(planes) != expect[ax] or got_plane != want_plane or any(p.shape != got_plane for p in planes):
        raise GeometryError(
            f"{len(planes)} slices of {got_plane[::-1]} pixels do not fit the reference grid "
            f"{tuple(expect)} along {axis} ({expect[ax]} slices of {want_plane[::-1]})",
            "pass the reference the slices were made from, and the same --axis")
    stack = np.stack(planes, axis=ax)
    if "window" in side and "bits" in side:
        lo, hi = side["window"]
        top = (1 << int(side["bits"])) - 1
        stack = (stack.astype(np.float32) / top * (hi - lo) + lo).astype(np.float32)
    canon = canon_ref.with_array(stack, modality=modality or side.get("modality") or reference.modality)
    out = undo(canon)
    out.meta = {"format": "png-folder", "path": str(folder), "notes": []}
    return out
