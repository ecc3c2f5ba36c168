"""PNG previews with proper windowing: translation montages and generation contact sheets.

Slices are shown in radiological convention (patient's right on the image left, anterior up) from
the canonical RAS array, and windowed with fixed presets (CT: a named HU window; MRI: the volume's
0.5-99.5 percentiles; uncertainty: 0 to its 99th percentile) instead of per-slice min/max, so
intensities are comparable across slices and across input and output (med2image#38 complains
about the opposite).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import modalities
from ..io.atomic import atomic_path
from ..io.volume import Volume


def window_for(array: np.ndarray, modality: str | None, ct_window: str = "soft-tissue") -> tuple[float, float]:
    """Display window (low, high): a named HU window for CT, percentiles otherwise."""
    mod = modalities.split_target(modality)[0] if modality else None
    if mod == "ct":
        return modalities.CT_WINDOWS[ct_window]
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Window an image to 8-bit grey."""
    lo, hi = window
    x = (np.asarray(image, dtype=np.float32) - lo) / max(hi - lo, 1e-6)
    return (np.clip(np.nan_to_num(x), 0, 1) * 255 + 0.5).astype(np.uint8)


def display_slice(vol: Volume, index: int | None = None, axis: int = 2) -> np.ndarray:
    """A slice of the canonical (RAS) array in radiological display orientation."""
    from ..io.orientation import to_canonical_array

    arr, _ = to_canonical_array(np.asarray(vol.array, dtype=np.float32), vol.affine)
    k = arr.shape[axis] // 2 if index is None else index
    sl = np.take(arr, k, axis=axis)  # remaining axes in RAS order
    # rows: second remaining axis, top = anterior/superior; columns: first axis, left = patient right
    return np.flipud(sl.T)[:, ::-1] if axis != 0 else np.flipud(sl.T)


def _fit(tile: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = tile.shape
    s = side / max(h, w)
    img = Image.fromarray(tile).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    out = np.zeros((side, side), dtype=np.uint8)
    a = np.asarray(img)
    t, left = (side - a.shape[0]) // 2, (side - a.shape[1]) // 2
    out[t:t + a.shape[0], left:left + a.shape[1]] = a
    return out


def grid(tiles: Sequence[Sequence[np.ndarray]], side: int = 256, gap: int = 4) -> np.ndarray:
    """Tile 8-bit images row by row into one image (each tile fitted into ``side`` x ``side``)."""
    rows, cols = len(tiles), max(len(r) for r in tiles)
    out = np.zeros((rows * side + (rows - 1) * gap, cols * side + (cols - 1) * gap), dtype=np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            out[i * (side + gap):i * (side + gap) + side, j * (side + gap):j * (side + gap) + side] = _fit(tile, side)
    return out


def save_png(image: np.ndarray, path: Path, overwrite: bool = False) -> Path:
    """Write an 8- or 16-bit grey PNG atomically."""
    from PIL import Image

    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def translation_preview(inputs: Sequence[Volume], output: Volume, std: Volume | None, path: Path,
                        overwrite: bool = False, side: int = 256) -> Path:
    """Montage: one row per slice position (25 %, 50 %, 75 % along the axial axis), columns
    input(s) | output | uncertainty, each with its own fixed window."""
    from ..io.orientation import to_canonical_array

    n = to_canonical_array(np.asarray(output.array), output.affine)[0].shape[2]
    rows = []
    win_in = [window_for(np.asarray(v.array, dtype=np.float32), v.modality)
              for v in inputs]
    win_out = window_for(np.asarray(output.array, dtype=np.float32), output.modality)
    win_std = None
    if std is not None:
        s = np.asarray(std.array, dtype=np.float32)
        hi = float(np.percentile(s, 99)) if s.size else 1.0
        win_std = (0.0, hi if hi > 0 else 1.0)
    for frac in (0.25, 0.5, 0.75):
        k = min(n - 1, int(round(frac * (n - 1))))
        row = [to_uint8(display_slice(v, k), w) for v, w in zip(inputs, win_in, strict=True)]
        row.append(to_uint8(display_slice(output, k), win_out))
        if std is not None and win_std is not None:
            row.append(to_uint8(display_slice(std, k), win_std))
        rows.append(row)
    return save_png(grid(rows, side=side), path, overwrite=overwrite)


def contact_sheet(images: Sequence[np.ndarray], path: Path, overwrite: bool = False, cols: int | None = None,
                  side: int = 256) -> Path:
    """Contact sheet of 8-bit images (generation results), ``cols`` per row (default: near-square)."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = [list(images[i:i + cols]) for i in range(0, n, cols)]
    return save_png(grid(rows, side=side), path, overwrite=overwrite)
