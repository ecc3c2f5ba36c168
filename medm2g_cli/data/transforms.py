"""Preprocessing shared by training-data preparation and inference: intensities and slice geometry.

One implementation, used by both sides, so a model sees at inference exactly the preprocessing it
was trained on (canonical orientation is in :mod:`medm2g_cli.io.orientation`):

- :class:`Normalisation` maps physical units to the model range [-1, 1] and back;
  :func:`normalisation_for` fits the registry preset of a modality
  (:data:`medm2g_cli.modalities.MODALITIES`: a fixed HU window for CT, per-volume percentiles for
  MRI, min/max for X-ray); :func:`target_normalisation` gives an output's units.
- :class:`SliceGeometry` pads a slice to a square and resizes it to the model size, and back.

Numpy at import; torch only inside :class:`SliceGeometry`'s methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import modalities
from ..errors import ConfigError, InputError

MRI_SYNTH_RANGE = (0.0, 1000.0)
"""Arbitrary-unit range given to an MRI synthesised from a non-MRI source (no input scale exists)."""


# -- intensities ----------------------------------------------------------------------------------


@dataclass
class Normalisation:
    """How one volume was mapped to [-1, 1] (so the mapping can be inverted)."""

    modality: str
    low: float
    high: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Physical units -> [-1, 1] (clipped)."""
        span = max(self.high - self.low, 1e-6)
        return np.clip((x.astype(np.float32) - self.low) / span * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)

    def inverse(self, y: np.ndarray, *, clip: bool = False) -> np.ndarray:
        """[-1, 1] -> physical units; ``clip`` clips ``y`` to [-1, 1] first (scoring model outputs)."""
        y = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0) if clip else y
        return ((y.astype(np.float32) + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)


def normalisation_for(array: np.ndarray, modality: str) -> Normalisation:
    """The registry preset of ``modality`` applied to ``array``: a fixed HU window for CT,
    per-volume percentiles for MRI, min/max for X-ray."""
    spec = modalities.get(modality)
    preset = spec.preset
    if preset is None:
        raise ConfigError(f"modality '{modality}' has no intensity preset", "use an imaging modality")
    if preset.mode == "window":
        return Normalisation(spec.name, preset.low, preset.high)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise InputError("the input has no finite voxel values", "check the file")
    if preset.mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(finite, [preset.low, preset.high]))
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0  # a constant image: any non-empty range keeps the mapping invertible
    return Normalisation(spec.name, lo, hi)


def target_normalisation(target: str, sources: Sequence[Normalisation]) -> Normalisation:
    """Mapping of the *output* from [-1, 1] to physical units.

    CT: the HU window (outputs in HU). MRI from an MRI source: the first MRI source's range (the
    output looks like a sibling contrast of the input). MRI from a CT: a fixed arbitrary-unit range.
    """
    mod = modalities.split_target(target)[0]
    preset = modalities.get(mod).preset
    assert preset is not None
    if preset.mode == "window":
        return Normalisation(mod, preset.low, preset.high)
    for s in sources:
        if s.modality == mod:
            return Normalisation(mod, s.low, s.high)
    return Normalisation(mod, *MRI_SYNTH_RANGE)


# -- geometry of slices -----------------------------------------------------------------------------


@dataclass
class SliceGeometry:
    """Pad an (h, w) slice to a square and resize it to the model size, and back exactly.

    A slice that fits inside the model size is only padded (to ``size``), never upsampled:
    upsampling adds no information, and the bilinear round trip blurs one-voxel structures (a 2 mm
    skull lost 40 HU MAE to it at 128 px), whereas padding keeps the round trip exact. Larger slices
    are padded to a square and downsampled (antialiased).
    """

    h: int
    w: int
    size: int

    @property
    def side(self) -> int:
        return max(self.h, self.w, self.size)

    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding to the square side (centred)."""
        dh, dw = self.side - self.h, self.side - self.w
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2

    def to_model(self, slices: np.ndarray, fill: float = -1.0) -> Any:
        """[B, h, w] in [-1, 1] -> tensor [B, 1, size, size] (background pads with ``fill``)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        t, b, left, r = self.pads()
        x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
        x = F.pad(x, (left, r, t, b), value=fill)
        if self.side != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.side > self.size)
        return x

    def from_model(self, x: Any) -> np.ndarray:
        """Tensor [B, 1, size, size] -> [B, h, w] (resize back, crop the padding)."""
        import torch.nn.functional as F  # noqa: N812

        x = x.float().cpu()
        if self.side != self.size:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False,
                              antialias=self.size > self.side)
        t, _, left, _ = self.pads()
        return x[:, 0, t:t + self.h, left:left + self.w].numpy()
