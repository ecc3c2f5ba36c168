"""Baselines the demo measures the model against, fitted or computed in the same run.

* :class:`GlobalMap` — the best *global* intensity mapping input value(s) -> target (per-bin
  statistics): a model that learned nothing about anatomy or context reaches this.
* :func:`autoencoder_roundtrip` — ``decode(encode(volume))``: the best any latent diffusion with
  this autoencoder can reach (the floor of MRI -> CT's MAE, the ceiling of PD synthesis's PSNR).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError


class GlobalMap:
    """A global intensity mapping: normalised input value(s) -> target, by per-bin statistics.

    One input: 128 bins over [-1, 1] with the per-bin median (the MAE-optimal global map); two
    inputs: a 32 x 32 grid with the per-cell mean (the MSE/PSNR-optimal one). Empty bins take the
    nearest filled bin's value.
    """

    def __init__(self, bins: int, stat: str) -> None:
        self.bins, self.stat = bins, stat
        self.table: np.ndarray | None = None

    def _index(self, xs: list[np.ndarray]) -> np.ndarray:
        idx = [np.clip(((x + 1.0) / 2.0 * self.bins).astype(np.int64), 0, self.bins - 1) for x in xs]
        flat = idx[0]
        for i in idx[1:]:
            flat = flat * self.bins + i
        return flat

    def fit(self, xs: list[np.ndarray], y: np.ndarray) -> GlobalMap:
        """Fit on flattened normalised inputs ``xs`` and targets ``y``."""
        n = self.bins ** len(xs)
        flat = self._index(xs)
        table = np.full(n, np.nan, dtype=np.float64)
        order = np.argsort(flat, kind="stable")
        fs, ys = flat[order], y[order]
        starts = np.flatnonzero(np.r_[True, fs[1:] != fs[:-1]])
        ends = np.r_[starts[1:], fs.size]
        for s, e in zip(starts, ends, strict=True):
            v = ys[s:e]
            table[fs[s]] = float(np.median(v)) if self.stat == "median" else float(v.mean())
        filled = np.flatnonzero(~np.isnan(table))
        if filled.size == 0:
            raise ConfigError("no training voxels to fit the baseline", "check the phantom cohort")
        empty = np.flatnonzero(np.isnan(table))
        if empty.size:
            nearest = filled[np.abs(empty[:, None] - filled[None, :]).argmin(axis=1)]
            table[empty] = table[nearest]
        self.table = table
        return self

    def __call__(self, xs: list[np.ndarray]) -> np.ndarray:
        assert self.table is not None
        return self.table[self._index(xs)].astype(np.float32)


def autoencoder_roundtrip(model: Any, arr: np.ndarray, modality: str, batch: int = 16) -> np.ndarray:
    """decode(encode(volume)) slice by slice, as the pipelines see it (same normalisation and slice
    geometry): the best any latent diffusion with this autoencoder can reach on ``arr``."""
    import torch

    from ..data.transforms import SliceGeometry, normalisation_for

    norm = normalisation_for(arr, modality)
    sl = np.moveaxis(norm.forward(arr), 2, 0)
    geo = SliceGeometry(sl.shape[1], sl.shape[2], model.image_size)
    out = np.empty_like(sl)
    with torch.inference_mode():
        for i in range(0, len(sl), batch):
            z = model.encode_image(modality, geo.to_model(sl[i:i + batch]))
            out[i:i + batch] = geo.from_model(model.decode_image(modality, z))
    return np.asarray(norm.inverse(np.moveaxis(out, 0, 2)), dtype=np.float32)
