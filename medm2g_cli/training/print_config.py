"""``--print-config``: the fully resolved configuration of a pretrain/finetune run, without training.

:func:`resolved_config` returns what a run would use — model config, stages (with their data parts
when ``--data`` is given), optimiser groups per stage and branch, batch arithmetic, noise and lr
schedules — as a JSON-compatible dict that is itself a valid ``--config`` file: feeding it back
describes (and runs) the same run. The model is built on the ``meta`` device (no weights are read or
allocated), so a ``full`` configuration prints in seconds on any machine, without data or ``-o``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from . import optim
from .config import TrainConfig
from .model_setup import model_config, processes, resolved, trained_branches


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


def resolved_config(req: TrainConfig) -> dict[str, Any]:
    """The run's resolved configuration (see the module docstring); nothing is written or trained."""
    from ..engine import MedM2G
    from . import runner
    from .trainable import trainable_parameters

    req = resolved(req)
    loop = req.loop
    cfg = model_config(req)
    if cfg is None:
        raise ConfigError("--print-config needs a model config", "pass --preset or --init")
    model = MedM2G.from_config(cfg, device="meta")
    flows = runner.run_flows(req)
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
