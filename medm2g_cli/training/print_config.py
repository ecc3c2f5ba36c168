"""``--print-config``: the fully resolved configuration of a pretrain/finetune run, without training.

:func:`resolved_config` returns what a run would use — model config, stages (with their data parts
when ``--data`` is given), optimiser groups per stage and branch, batch arithmetic, noise and lr
schedules — as a JSON-compatible dict that is itself a valid ``--config`` file: feeding it back
describes (and runs) the same run. The model is built on the ``meta`` device (no weights are read or
allocated), so a ``full`` configuration prints in seconds on any machine, without data or ``-o``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from .. import modalities
from ..config import ModelConfig, model_preset
from ..errors import ConfigError
from . import optim


def processes() -> int:
    """Processes of the run: ``WORLD_SIZE`` as ``accelerate launch``/torchrun set it, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


class _Shim:
    """Stands in for a model in :func:`runner._apply_init_overrides` (it only reads ``config``)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config


def model_config(req: Any) -> ModelConfig | None:
    """The model config a request trains, read without building the model (None for ``model_factory``)."""
    from . import runner

    if req.model_factory is not None:
        return None
    if req.init is not None:
        from ..engine.io import read_meta

        init = Path(req.init)
        if not (init / "medm2g.json").is_file():
            raise ConfigError(f"--init '{init}' is not a model folder", "point --init at a folder made by weights init or pretrain")
        cfg = ModelConfig.from_dict(read_meta(init)["config"])
        runner._apply_init_overrides(_Shim(cfg), req.model_overrides)
        if req.preset and req.preset != cfg.preset:
            raise ConfigError(f"--preset {req.preset} does not match --init '{init}', which is a '{cfg.preset}' model",
                              f"drop --preset or pass --preset {cfg.preset}")
        return cfg
    if not req.preset:
        raise ConfigError("no model given", "pass --preset tiny|small|full, --init MODEL_DIR or --config FILE")
    return model_preset(req.preset, **runner._flatten(req.model_overrides))


def trained_branches(req: Any, cfg: ModelConfig) -> list[str]:
    """Branches whose diffusion models the run trains (for the ``full`` batch default)."""
    from .stages import parse_pair

    if req.options.pairs:
        names = [parse_pair(p)[0] for p in req.options.pairs]
    elif req.options.targets:
        names = list(req.options.targets)
    else:
        names = list(cfg.modalities)
    return list(dict.fromkeys(modalities.split_target(n)[0] for n in names))


def resolve_loop(req: Any) -> Any:
    """``req.loop`` with the preset's defaults and the batch arithmetic resolved (see :mod:`.optim`)."""
    cfg = model_config(req)
    if cfg is None:
        return optim.resolve_loop(req.loop, preset=None, branches=[], processes=processes())
    return optim.resolve_loop(req.loop, preset=cfg.preset, branches=trained_branches(req, cfg),
                              processes=processes(), finetune=bool(req.task))


def _groups(jobs: list[Any], loop: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        rows = []
        for g in optim.param_groups(job, loop.lr, loop.branch_lr):
            ids = {id(p) for p in g["params"]}
            comps = sorted(c for c, ps in job.params.items() if any(id(p) in ids for p in ps))
            rows.append({"branch": g["branch"], "lr": g["lr"], "components": comps,
                         "parameters": sum(p.numel() for p in g["params"])})
        out[job.name] = rows
    return out


class _MetaJob:
    """A stage's trainable parameters per component, for a run described without data."""

    def __init__(self, name: str, params: dict[str, list[Any]]) -> None:
        self.name, self.params = name, params

    def trainable_parameters(self) -> list[Any]:
        unique: dict[int, Any] = {}
        for k in sorted(self.params):
            for p in self.params[k]:
                unique.setdefault(id(p), p)
        return list(unique.values())


def resolved_config(req: Any) -> dict[str, Any]:
    """The run's resolved configuration (see the module docstring); nothing is written or trained."""
    from ..engine import MedM2G
    from . import runner
    from . import stages as stages_mod
    from .trainable import trainable_parameters

    req.loop.validate()
    req.stages = stages_mod.parse_stages(req.stages)
    loop = resolve_loop(req)
    req.loop = loop
    cfg = model_config(req)
    if cfg is None:
        raise ConfigError("--print-config needs a model config", "pass --preset or --init")
    model = MedM2G.from_config(cfg, device="meta")
    flows = runner._flows(req) if "multiflow" in req.stages else []
    notes: list[str] = []
    split: list[Any] = []
    if req.data:
        jobs, plan = runner.plan(req, model, runner.precheck(req))
        split = plan["stages"]
        flows_report = plan["flow_added_parameters"]
    else:
        notes.append("no --data: stages are shown with the parts the options name; data checks run with --data")
        jobs = []
        for stage in req.stages:
            mods = trained_branches(req, cfg) if stage in ("diffusion", "multiflow") else list(cfg.modalities)
            if stage == "multiflow":
                mods = sorted({m for f in flows for m in f.modalities})
            got = trainable_parameters(model, stage, mods)
            jobs.append(_MetaJob(stage, {k: list(v) for k, v in got.items()}))
        flows_report = []
    sched = dataclasses.asdict(cfg.scheduler)
    return {
        "task": req.task,
        "preset": cfg.preset,
        "init": str(req.init) if req.init is not None else None,
        "data": [str(d) for d in req.data],
        "stages": list(req.stages),
        "flows": [f.name for f in flows] or None,
        "flow_schedule": req.flow_schedule,
        "seed": loop.seed,
        "train": dataclasses.asdict(loop),
        "stage_options": dataclasses.asdict(req.options),
        "model": cfg.to_dict(),
        "resolved": {
            "batch": optim.batch_report(loop, processes()),
            "optimizer_groups": _groups(jobs, loop),
            "schedules": {"noise": sched, "lr": {"schedule": loop.lr_schedule, "warmup_steps": loop.warmup_steps,
                                                 "plateau_factor": loop.plateau_factor}},
            "stages": split,
            "flow_added_parameters": flows_report,
            "notes": notes,
        },
    }
