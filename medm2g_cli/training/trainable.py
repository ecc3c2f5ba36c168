"""Which parameters of a :class:`~medm2g_cli.engine.model.MedM2G` each training stage trains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from .. import modalities
from ..errors import ConfigError

if TYPE_CHECKING:
    from .model_api import TrainableModel

STAGES = ("autoencoders", "alignment", "diffusion", "multiflow")


def trainable_parameters(model: TrainableModel, stage: str, modalities_: Sequence[str] | None = None
                         ) -> dict[str, list[nn.Parameter]]:
    """Per component, the parameters ``stage`` trains for ``modalities_`` (default: all the model has).

    - ``autoencoders``: ``vae_<m>`` and ``text_vae``;
    - ``alignment``: ``image_encoder_<m>`` (the text encoder is the frozen centre);
    - ``diffusion``: ``unet_<m>``, ``conditioner_<m>`` and the imaging context encoders;
    - ``multiflow``: the cross-guidance parameters: ``context_encoder_<m>``,
      ``conditioner_<m>`` and the UNets' cross-attention (``attn2``) layers; the base
      diffusers stay frozen (CoDi).
    """
    cfg = model.config
    mods = [modalities.split_target(m)[0] for m in (modalities_ or cfg.modalities)]
    mods = [m for m in dict.fromkeys(mods) if m in cfg.modalities]
    parts = model.components()
    out: dict[str, list[nn.Parameter]] = {}

    def add(name: str, filt: str | None = None) -> None:
        if name in parts:
            ps = [p for n, p in parts[name].named_parameters() if filt is None or filt in n]
            if ps:
                out[name] = ps

    for m in mods:
        if stage == "autoencoders":
            add("text_vae" if m == "text" else f"vae_{m}")
        elif stage == "alignment":
            if m != "text":
                add(f"image_encoder_{m}")
        elif stage == "diffusion":
            add(f"unet_{m}")
            add(f"conditioner_{m}")
            if m != "text" and cfg.conditioning == "context":
                for s in cfg.image_modalities:
                    add(f"context_encoder_{s}")
        elif stage == "multiflow":
            add(f"context_encoder_{m}")
            add(f"conditioner_{m}")
            add(f"unet_{m}", "attn2")
        else:
            raise ConfigError(f"unknown training stage '{stage}'", f"use {', '.join(STAGES[:-1])} or {STAGES[-1]}")
    return out


def cross_guidance_parameters(model: TrainableModel, modality: str) -> int:
    """Parameters cross-guidance adds to ``modality``'s branch (context encoder + conditioner; Table A8)."""
    mod = model.require_branch(modality)
    return sum(p.numel() for n in (f"context_encoder_{mod}", f"conditioner_{mod}")
               for p in model.component(n).parameters())
