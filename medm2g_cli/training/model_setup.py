"""The model a run trains and the settings that depend on it.

* :func:`build_model` — the ``--init`` folder (with the config's allowed ``model:`` changes), a fresh
  ``--preset`` (seeded), or the API's own factory;
* :func:`model_config` — the same model's config without building it (``--print-config``);
* :func:`resolve_loop` — the loop settings with the preset's defaults (Table A3 for ``full``) and the
  batch arithmetic resolved.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import modalities
from ..config import ModelConfig, model_preset
from ..errors import ConfigError
from . import optim
from .config import LoopConfig, TrainConfig, flatten

# Fields of an existing model that a config may change: they change no parameter shape (the UNets
# and autoencoders are convolutional), e.g. continuing a 64 px model at 128 px, or fine-tuning an
# epsilon UNet into a v-prediction one (as Stable Diffusion 2's 768-v model came from its base).
RESOLUTION_FIELDS: tuple[str, ...] = ("image.image_size",)
# The noise schedule changes no parameter either: a config may fine-tune on another one (supplement
# C.3's beta 1e-4 -> 0.02 for MRI synthesis, tasks.py); the model folder then records it and sampling follows.
SCHEDULE_FIELDS: tuple[str, ...] = ("scheduler.beta_start", "scheduler.beta_end", "scheduler.beta_schedule")
INIT_MUTABLE_FIELDS: tuple[str, ...] = (*RESOLUTION_FIELDS, "scheduler.v_prediction", *SCHEDULE_FIELDS)


def _model_seed(cfg: TrainConfig) -> int:
    return cfg.loop.seed if cfg.seed_model is None else cfg.seed_model


def build_model(cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The model to train: ``--init`` folder, else a fresh ``--preset`` (seeded)."""
    import torch

    if cfg.model_factory is not None:
        torch.manual_seed(_model_seed(cfg))
        return cfg.model_factory(), {"preset": cfg.preset or "custom"}
    if cfg.init is not None:
        init = Path(cfg.init)
        if not (init / "model_index.json").is_file() and not (init / "medm2g.json").is_file():
            raise ConfigError(f"--init '{init}' is not a model folder", "point --init at a folder made by weights init or pretrain")
        from ..engine import MedM2G

        model = MedM2G.from_pretrained(init)
        apply_init_overrides(model, cfg.model_overrides)
        model.upgrade_prompt_scale()  # function-preserving; older weights train with the current convention
        have = preset_of(model)
        if cfg.preset and have and cfg.preset != have:
            raise ConfigError(f"--preset {cfg.preset} does not match --init '{init}', which is a '{have}' model",
                              f"drop --preset or pass --preset {have}")
        return model, {"init": str(init), "preset": have}
    if not cfg.preset:
        raise ConfigError("no model given", "pass --preset tiny|small|full, --init MODEL_DIR or --config FILE")
    from ..engine import MedM2G

    mcfg = model_preset(cfg.preset, **flatten(cfg.model_overrides))  # unknown preset/field: ConfigError
    # A fresh model is a function of the seed, so a resumed run rebuilds the same starting point.
    seed = _model_seed(cfg)
    torch.manual_seed(seed)
    model = MedM2G.from_config(mcfg, seed=seed)
    return model, {"preset": cfg.preset, "overrides": cfg.model_overrides}


def apply_init_overrides(model: Any, overrides: Any) -> None:
    """Apply a config's ``model:`` section to an ``--init`` model: resolution fields change, any
    other field must equal the model's (a config written for a fresh preset stays usable)."""
    for key, value in flatten(overrides).items():
        obj = model.config
        *path, leaf = key.split(".")
        for part in path:
            obj = getattr(obj, part, None)
        if obj is None or not hasattr(obj, leaf):
            raise ConfigError(f"unknown model field '{key}' in the config", "check the config's model: section")
        current = getattr(obj, leaf)
        if key in RESOLUTION_FIELDS:
            size = int(value)
            if size < 8 or size % 8:
                raise ConfigError(f"{key} = {value} is not a positive multiple of 8", "e.g. 64, 128 or 256")
            setattr(obj, leaf, size)
        elif key == "scheduler.v_prediction":
            names = (value,) if isinstance(value, str) else tuple(value)
            setattr(obj, leaf, tuple(dict.fromkeys(names)))
            model.config.validate()  # the one check of the branch names
        elif key in SCHEDULE_FIELDS:
            setattr(obj, leaf, str(value) if leaf == "beta_schedule" else float(value))
            if hasattr(model, "train_scheduler"):  # the training noise follows the new schedule
                from ..engine import schedulers

                model.train_scheduler = schedulers.training_scheduler(model.config.scheduler)
        elif (list(current) if isinstance(current, tuple) else current) != (list(value) if isinstance(value, tuple) else value):
            raise ConfigError(f"--init model has {key} = {current!r} but the config asks for {value!r}",
                              f"drop {key} from the config's model: section (only {', '.join(INIT_MUTABLE_FIELDS)} "
                              "can change for an existing model)")


def preset_of(model: Any) -> str | None:
    """The preset name a model's config records (None when it records none)."""
    cfg = getattr(model, "config", None)
    for name in ("preset", "name"):
        v = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(v, str):
            return v
        if isinstance(cfg, dict) and isinstance(cfg.get(name), str):
            return cfg[name]
    return None


class _Shim:
    """Stands in for a model in :func:`apply_init_overrides` (it only reads ``config``)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config


def model_config(cfg: TrainConfig) -> ModelConfig | None:
    """The model config a run trains, read without building the model (None for ``model_factory``)."""
    if cfg.model_factory is not None:
        return None
    if cfg.init is not None:
        from ..engine.io import read_meta

        init = Path(cfg.init)
        if not (init / "medm2g.json").is_file():
            raise ConfigError(f"--init '{init}' is not a model folder", "point --init at a folder made by weights init or pretrain")
        mcfg = ModelConfig.from_dict(read_meta(init)["config"])
        apply_init_overrides(_Shim(mcfg), cfg.model_overrides)
        if cfg.preset and cfg.preset != mcfg.preset:
            raise ConfigError(f"--preset {cfg.preset} does not match --init '{init}', which is a '{mcfg.preset}' model",
                              f"drop --preset or pass --preset {mcfg.preset}")
        return mcfg
    if not cfg.preset:
        raise ConfigError("no model given", "pass --preset tiny|small|full, --init MODEL_DIR or --config FILE")
    return model_preset(cfg.preset, **flatten(cfg.model_overrides))


def processes() -> int:
    """Processes of the run: ``WORLD_SIZE`` as ``accelerate launch``/torchrun set it, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def trained_branches(cfg: TrainConfig, mcfg: ModelConfig) -> list[str]:
    """Branches whose diffusion models the run trains (for the ``full`` batch default)."""
    from .stages import parse_pair

    if cfg.options.pairs:
        names = [parse_pair(p)[0] for p in cfg.options.pairs]
    elif cfg.options.targets:
        names = list(cfg.options.targets)
    else:
        names = list(mcfg.modalities)
    return list(dict.fromkeys(modalities.split_target(n)[0] for n in names))


def resolve_loop(cfg: TrainConfig) -> LoopConfig:
    """``cfg.loop`` with the preset's defaults and the batch arithmetic resolved (see :mod:`.optim`)."""
    mcfg = model_config(cfg)
    if mcfg is None:
        return optim.resolve_loop(cfg.loop, preset=None, branches=[], processes=processes())
    return optim.resolve_loop(cfg.loop, preset=mcfg.preset, branches=trained_branches(cfg, mcfg),
                              processes=processes(), finetune=bool(cfg.task))


def resolved(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` checked (:meth:`LoopConfig.validate`) with its loop resolved (:func:`resolve_loop`)."""
    cfg.loop.validate()
    return replace(cfg, loop=resolve_loop(cfg))
