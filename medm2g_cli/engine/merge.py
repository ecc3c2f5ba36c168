"""Combine trained components of two model folders of the same architecture (``medm2g weights merge``).

Stages that train different branches can run as separate processes (one per core) and be merged
afterwards, as diffusers pipelines swap a UNet (``pipe.unet = other.unet``). A diffuser only works on
the latents and conditions it was trained with, so merging refuses a component whose inputs differ:
the autoencoder and latent scale of its modality, and the pooled encoders.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import DECODER_PREFIXES
from ..errors import ConfigError

# components whose outputs other components consume (latents, pooled embeddings)
_ENCODERS = ("text_encoder",)


def _modality(component: str) -> str | None:
    for prefix in ("unet_", "conditioner_", "context_encoder_", "vae_", "image_encoder_"):
        if component.startswith(prefix):
            return component[len(prefix):]
    return "text" if component == "text_vae" else None


def _config(module: torch.nn.Module) -> dict[str, Any]:
    """A component's architecture settings (loader bookkeeping such as ``_name_or_path`` left out)."""
    cfg = getattr(module, "config", {})
    items = cfg.to_dict().items() if hasattr(cfg, "to_dict") else dict(cfg).items()
    return {k: v for k, v in items if not str(k).startswith("_")}


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> bool:
    """Identical state, leaving out keys that start with one of ``skip``."""
    sa = {k: v for k, v in a.state_dict().items() if not k.startswith(skip)}
    sb = {k: v for k, v in b.state_dict().items() if not k.startswith(skip)}
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _latent_maker(mod: str) -> str:
    return "text_vae" if mod == "text" else f"vae_{mod}"


def merge_models(base: Any, sources: Mapping[str, Any]) -> dict[str, str]:
    """Copy ``sources`` (component name -> MedM2G) into ``base`` in place; returns what changed.

    Taking an autoencoder takes its latent scale factor with it. A diffuser or conditioner is only
    taken when, in the merged model, its modality's latents (the image autoencoder's encoder side, or
    the whole text VAE), scale factor and every pooled encoder are identical to those of the model it
    comes from.
    """
    names = set(base.parts.keys())
    for model in {id(m): m for m in sources.values()}.values():
        model.upgrade_prompt_scale()  # old conditioners: same function, current convention
        if model.config.to_dict() != base.config.to_dict():
            raise ConfigError("the models have different architectures", "merge models of one preset and config")
    base.upgrade_prompt_scale()
    done: dict[str, str] = {}
    for comp, src in sources.items():
        if comp not in names or comp not in src.parts:
            raise ConfigError(f"no component '{comp}' in both models", f"choose from: {', '.join(sorted(names))}")
        if type(src.parts[comp]) is not type(base.parts[comp]) or _config(src.parts[comp]) != _config(base.parts[comp]):
            raise ConfigError(f"component '{comp}' has a different configuration in the two models",
                              "merge models of one preset and config")
    # a taken image autoencoder with other latents would strand the base's own diffuser of that modality
    for comp, src in sources.items():
        mod = _modality(comp)
        if not comp.startswith("vae_") or mod is None or f"unet_{mod}" not in names or f"unet_{mod}" in sources:
            continue
        if not _same(base.parts[comp], src.parts[comp], DECODER_PREFIXES) or \
                abs(base.scale_factors.get(mod, 1.0) - src.scale_factors.get(mod, 1.0)) > 1e-9:
            raise ConfigError(f"'{comp}' makes other {mod} latents than the ones 'unet_{mod}' was trained on",
                              f"take 'unet_{mod}' from the same model too, or only a decoder fine-tuned alone")
    for comp, src in sources.items():
        base.parts[comp].load_state_dict(src.parts[comp].state_dict())
        mod = _modality(comp)
        if comp.startswith("vae_") or comp == "text_vae":
            assert mod is not None
            base.scale_factors[mod] = src.scale_factors[mod]
        done[comp] = "taken"
    # every taken diffuser/conditioner must see the inputs it was trained with
    for comp, src in sources.items():
        mod = _modality(comp)
        if not (comp.startswith("unet_") or comp.startswith("conditioner_")) or mod is None:
            continue
        needs = [_latent_maker(mod), *_ENCODERS, *(n for n in names if n.startswith("image_encoder_"))]
        for n in needs:
            skip = DECODER_PREFIXES if n.startswith("vae_") else ()  # a diffuser never sees the decoder
            if n in names and not _same(base.parts[n], src.parts[n], skip):
                raise ConfigError(f"'{comp}' was trained with another '{n}' than the merged model has",
                                  f"take '{n}' from the same model too, or retrain '{comp}'")
        if abs(base.scale_factors.get(mod, 1.0) - src.scale_factors.get(mod, 1.0)) > 1e-9:
            raise ConfigError(f"'{comp}' was trained on {mod} latents with another scale factor",
                              f"take '{_latent_maker(mod)}' from the same model too")
    return done


def merge_folders(base: Path, takes: Mapping[str, Path], out: Path, overwrite: bool = False) -> dict[str, Any]:
    """``merge_models`` on folders: load, merge, save ``out`` atomically (hashes rewritten)."""
    from .model import MedM2G

    model = MedM2G.from_pretrained(base)
    loaded: dict[Path, Any] = {}
    sources = {}
    for comp, path in takes.items():
        key = Path(path).resolve()
        if key not in loaded:
            loaded[key] = MedM2G.from_pretrained(key)
        sources[comp] = loaded[key]
    merge_models(model, sources)
    model.provenance["merged"] = {"base": str(base), **{c: str(p) for c, p in takes.items()}}
    model.save_pretrained(out, overwrite=overwrite)
    return {"output": str(out), "base": str(base), "taken": {c: str(p) for c, p in takes.items()},
            "scale_factors": dict(model.scale_factors)}
