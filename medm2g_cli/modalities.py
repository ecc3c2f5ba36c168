"""The one registry of modalities.

Everything that depends on "what kind of data is this" — latent shapes, intensity presets,
default configs, which translation directions exist — derives from :data:`MODALITIES` and
:data:`MRI_CONTRASTS`. Nothing else in the package hard-codes a modality list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

Kind = Literal["text", "image"]


@dataclass(frozen=True)
class IntensityPreset:
    """How raw intensities map to the model range [-1, 1] and back.

    ``mode == "window"``: a fixed window [low, high] in physical units (CT in HU).
    ``mode == "percentile"``: per-volume percentiles [low, high] (MRI, arbitrary units), the
    scale is kept with the volume so the mapping can be inverted.
    ``mode == "minmax"``: per-image min/max (X-ray pixel values).
    """

    mode: Literal["window", "percentile", "minmax"]
    low: float
    high: float
    unit: str = ""


@dataclass(frozen=True)
class Modality:
    """One modality the model handles."""

    name: str
    kind: Kind
    description: str
    spatial_dims: int = 0  # 0 for text, 2 for projection images, 3 for volumes
    preset: IntensityPreset | None = None
    dicom_modalities: tuple[str, ...] = ()
    contrasts: tuple[str, ...] = field(default_factory=tuple)


MRI_CONTRASTS: tuple[str, ...] = ("t1", "t2", "pd", "flair", "t1ce")
"""MRI contrasts, conditions of the ``mri`` modality (not separate branches)."""

CT_WINDOWS: dict[str, tuple[float, float]] = {
    # (low, high) in HU. "model" is the range the networks see: air to dense bone.
    "model": (-1024.0, 2048.0),
    "brain": (0.0, 80.0),
    "subdural": (-20.0, 180.0),
    "bone": (-450.0, 1050.0),
    "soft-tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "abdomen": (-150.0, 250.0),
    "liver": (-20.0, 180.0),
}
"""Named CT windows (low, high in HU), as radiology viewers define them (width/level)."""

MODALITIES: dict[str, Modality] = {
    "text": Modality("text", "text", "radiology report / finding text"),
    "xray": Modality(
        "xray",
        "image",
        "chest radiograph (2-D projection)",
        spatial_dims=2,
        preset=IntensityPreset("minmax", 0.0, 1.0),
        dicom_modalities=("CR", "DX", "DR"),
    ),
    "ct": Modality(
        "ct",
        "image",
        "computed tomography (3-D, Hounsfield units)",
        spatial_dims=3,
        preset=IntensityPreset("window", *CT_WINDOWS["model"], unit="HU"),
        dicom_modalities=("CT",),
    ),
    "mri": Modality(
        "mri",
        "image",
        "magnetic resonance imaging (3-D, arbitrary units); contrasts are conditions",
        spatial_dims=3,
        preset=IntensityPreset("percentile", 0.5, 99.5),
        dicom_modalities=("MR",),
        contrasts=MRI_CONTRASTS,
    ),
}

IMAGE_MODALITIES: tuple[str, ...] = tuple(m for m, spec in MODALITIES.items() if spec.kind == "image")


def get(name: str) -> Modality:
    """Return the modality called ``name`` (case-insensitive); MRI contrast names map to ``mri``."""
    key = name.lower().strip()
    if key in MRI_CONTRASTS:
        key = "mri"
    if key not in MODALITIES:
        raise ConfigError(
            f"unknown modality '{name}'",
            f"use one of: {', '.join(list(MODALITIES) + list(MRI_CONTRASTS))}",
        )
    return MODALITIES[key]


def split_target(name: str) -> tuple[str, str | None]:
    """Split a target such as ``pd`` or ``ct`` into (modality, contrast or None)."""
    key = name.lower().strip()
    if key in MRI_CONTRASTS:
        return "mri", key
    return get(key).name, None


def from_dicom(modality_tag: str | None) -> str | None:
    """Map a DICOM (0008,0060) Modality value to a registry name, or None if unknown."""
    if not modality_tag:
        return None
    tag = modality_tag.upper().strip()
    for name, spec in MODALITIES.items():
        if tag in spec.dicom_modalities:
            return name
    return None


# Translation directions offered by `medm2g translate`: name -> (source, target) where each side
# is a modality or an MRI contrast. Contrast pairs are generated from the registry.
def translation_directions() -> dict[str, tuple[str, str]]:
    """All directions `translate` accepts, e.g. ``mri2ct``, ``ct2mri``, ``t1-t2``."""
    directions: dict[str, tuple[str, str]] = {"mri2ct": ("mri", "ct"), "ct2mri": ("ct", "mri")}
    for a in MRI_CONTRASTS:
        for b in MRI_CONTRASTS:
            if a != b:
                directions[f"{a}-{b}"] = (a, b)
        directions[f"{a}-ct"] = (a, "ct")
        directions[f"ct-{a}"] = ("ct", a)
    return directions


FLOWS: dict[str, tuple[str, str]] = {
    "text-xray": ("text", "xray"),
    "text-ct": ("text", "ct"),
    "text-mri": ("text", "mri"),
    "ct-mri": ("ct", "mri"),
    # Supplement B names an "Xray-CT" pre-training domain but Table A1 lists no X-ray-CT data: selectable
    # (--flows xray-ct, for data with both), not in the default chain.
    "xray-ct": ("xray", "ct"),
    **{f"{a}-{b}": (a, b) for a in MRI_CONTRASTS for b in MRI_CONTRASTS if a < b},
}
"""Paired flows for cross-guided multi-flow training (section 1.5 of method.md)."""
