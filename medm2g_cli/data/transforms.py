"""Intensity presets, display windows and size fitting — each with its inverse. Numpy only.

Models see intensities in [-1, 1]. How a modality gets there comes from the registry
(:data:`medm2g_cli.modalities.MODALITIES`): CT uses a fixed HU window, MRI per-volume percentiles
(the scale is stored so outputs map back to the input's units), X-ray per-image min/max.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..modalities import CT_WINDOWS, get


@dataclass(frozen=True)
class IntensityScale:
    """A fitted linear map [low, high] -> [-1, 1] (values outside are clipped on the way in)."""

    modality: str
    mode: str
    low: float
    high: float

    def forward(self, arr: np.ndarray) -> np.ndarray:
        """Raw units -> model range [-1, 1] (float32)."""
        a = np.clip(np.asarray(arr, dtype=np.float32), self.low, self.high)
        return ((a - self.low) / (self.high - self.low) * 2.0 - 1.0).astype(np.float32)

    def inverse(self, arr: np.ndarray) -> np.ndarray:
        """Model range [-1, 1] -> raw units (float32); values outside [-1, 1] are clipped first."""
        a = np.clip(np.asarray(arr, dtype=np.float32), -1.0, 1.0)
        return ((a + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored next to outputs so a normalisation can be undone later)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntensityScale:
        """Inverse of :meth:`as_dict`."""
        return cls(str(d["modality"]), str(d["mode"]), float(d["low"]), float(d["high"]))


def fit_intensity(arr: np.ndarray, modality: str, *, window: tuple[float, float] | None = None,
                  mask: np.ndarray | None = None) -> IntensityScale:
    """Fit the registry preset of ``modality`` to ``arr`` (``window`` overrides CT's default window).

    MRI percentiles are taken over ``mask`` when given, else over non-zero voxels (background air
    would otherwise dominate the low percentile), else over all voxels.
    """
    spec = get(modality)
    if spec.preset is None:
        raise ConfigError(f"modality '{spec.name}' has no intensity preset", "pass an image modality (ct, mri, xray)")
    p = spec.preset
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        raise InputError("cannot normalise an empty image", "check the input volume")
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
        mode = "window"
    elif p.mode == "window":
        lo, hi, mode = p.low, p.high, "window"
    elif p.mode == "percentile":
        vals = a[mask.astype(bool)] if mask is not None else a[a != 0]
        if vals.size < 16:
            vals = a.ravel()
        lo, hi = (float(v) for v in np.percentile(vals, [p.low, p.high]))
        mode = "percentile"
    else:
        lo, hi, mode = float(a.min()), float(a.max()), "minmax"
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputError("image contains NaN or infinite values", "clean the input volume first")
    if hi <= lo:
        hi = lo + 1.0  # flat image: any positive width keeps the map invertible
    return IntensityScale(spec.name, mode, lo, hi)


def resolve_window(spec: str | None, arr: np.ndarray | None = None, modality: str | None = None) -> tuple[float, float]:
    """A display window (low, high) from ``PRESET`` (a CT window name), ``auto`` or ``LOW,HIGH``.

    ``None``/``auto`` uses the CT ``soft-tissue`` window for CT and the 0.5-99.5 percentiles otherwise.
    """
    if spec is None or spec.strip().lower() == "auto":
        if modality == "ct" and spec is None:
            return CT_WINDOWS["soft-tissue"]
        if arr is None:
            raise ConfigError("--window auto needs the image", "pass --window LOW,HIGH")
        a = np.asarray(arr, dtype=np.float64)
        lo, hi = (float(v) for v in np.percentile(a, [0.5, 99.5]))
        if hi <= lo:
            lo, hi = float(a.min()), float(a.max()) if a.max() > a.min() else float(a.min()) + 1.0
        return lo, hi
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


def apply_window(arr: np.ndarray, window: tuple[float, float], bits: int = 8) -> np.ndarray:
    """Clip to ``window`` and scale to unsigned integers of ``bits`` (8 or 16) for display."""
    lo, hi = window
    top = (1 << bits) - 1
    a = (np.clip(np.asarray(arr, dtype=np.float64), lo, hi) - lo) / (hi - lo) * top
    return np.round(a).astype(np.uint16 if bits > 8 else np.uint8)


# -- size fitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitInfo:
    """How an image was fitted to a model size, so :func:`unfit` can undo it exactly."""

    original: tuple[int, ...]
    resized: tuple[int, ...]
    pad_before: tuple[int, ...]
    target: tuple[int, ...]


def pad_to(arr: np.ndarray, shape: tuple[int, ...], value: float = 0.0) -> tuple[np.ndarray, tuple[int, ...]]:
    """Centre-pad the leading ``len(shape)`` axes of ``arr`` up to ``shape``; returns (padded, pad_before)."""
    a = np.asarray(arr)
    before, widths = [], []
    for n, t in zip(a.shape, shape, strict=False):
        if n > t:
            raise InputError(f"image axis of {n} voxels is larger than the target {t}", "resize or crop it first")
        b = (t - n) // 2
        before.append(b)
        widths.append((b, t - n - b))
    widths += [(0, 0)] * (a.ndim - len(shape))
    return np.pad(a, widths, mode="constant", constant_values=value), tuple(before)


def crop_back(arr: np.ndarray, original: tuple[int, ...], pad_before: tuple[int, ...]) -> np.ndarray:
    """Exact inverse of :func:`pad_to`."""
    sl = tuple(slice(b, b + n) for b, n in zip(pad_before, original, strict=True))
    return np.asarray(arr)[sl]


def _zoom(arr: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    a = np.asarray(arr)
    if tuple(a.shape[: len(shape)]) == tuple(shape):
        return a.copy()
    factors = [t / n for n, t in zip(a.shape, shape, strict=False)] + [1.0] * (a.ndim - len(shape))
    out = zoom(a.astype(np.float32), factors, order=order, mode="nearest", grid_mode=True)
    # zoom can be off by one from rounding; crop/pad to the exact target
    sl = tuple(slice(0, t) for t in shape)
    out = out[sl]
    if tuple(out.shape[: len(shape)]) != tuple(shape):
        widths = [(0, t - n) for n, t in zip(out.shape, shape, strict=False)] + [(0, 0)] * (a.ndim - len(shape))
        out = np.pad(out, widths, mode="edge")
    return out


def fit_to(arr: np.ndarray, size: tuple[int, ...], *, order: int = 1, value: float = -1.0) -> tuple[np.ndarray, FitInfo]:
    """Fit the leading axes of ``arr`` into ``size``: shrink (aspect kept) only if larger, then centre-pad.

    ``value`` is the padding value (-1 = background in the model range). Images that already fit are
    only padded, so :func:`unfit` restores them bit-exactly.
    """
    a = np.asarray(arr)
    orig = tuple(int(s) for s in a.shape[: len(size)])
    scale = min(1.0, *(t / n for n, t in zip(orig, size, strict=True)))
    resized = tuple(max(1, min(t, int(round(n * scale)))) for n, t in zip(orig, size, strict=True))
    if resized != orig:
        a = _zoom(a, resized, order)
    out, before = pad_to(a, tuple(size), value)
    return out, FitInfo(orig, resized, before, tuple(size))


def unfit(arr: np.ndarray, info: FitInfo, *, order: int = 1) -> np.ndarray:
    """Inverse of :func:`fit_to`: crop the padding, then resize back to the original size if needed."""
    a = crop_back(arr, info.resized, info.pad_before)
    if info.resized != info.original:
        a = _zoom(a, info.original, order)
    return a
