"""Running one :class:`~medm2g_cli.training.config.TrainConfig` (``medm2g pretrain``/``finetune``,
:mod:`medm2g_cli.api.training`): checks, the model, one phase per stage, the run folder.

A run is a folder::

    RUN/config.json             resolved config: model, data, stages with trainable/frozen split,
                                flows with added parameters (Table A8 style), loop settings
    RUN/metrics.jsonl           one line per step: loss per term, lr, samples/s, epoch
    RUN/checkpoint-<step>/      model/ (engine layout) + state/ (optimizer, scheduler, RNG, weights)
                                + trainer_state.json (phase, step = data position)
    RUN/model/                  the final model folder, ready for translate/generate/evaluate

Everything that can be wrong with the configuration (unknown stage or flow, a modality missing from the
data, a preset that does not match ``--init``) is checked before the first step.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io.outputs import check_separate
from . import flows as flows_mod
from . import loop as loop_mod
from . import run_folder
from . import stages as stages_mod
from .checkpoints import prepare_resume
from .config import StageOptions, TrainConfig
from .interfaces import Reporter, RunSummary
from .model_setup import build_model, resolved

CONFIG_FILE = "config.json"


CALIBRATION_SAMPLES = 256


def _recalibrates(options: StageOptions) -> bool:
    """Whether the autoencoders stage sets new latent scales: not when only decoders train, since the
    latents (and the diffusers trained on them) are unchanged."""
    return bool(options.calibrate_scale) and not options.ae_decoder_only


def _calibrate(job: Any, model: Any) -> dict[str, float]:
    """CoDi's ``scale_by_std``: after the autoencoders stage, set each trained modality's latent
    scale factor to 1/std of its latents on (up to 256) training samples, so the diffusers see
    unit-variance latents (text VAE latents are far from it: std ~0.3 with a small KL weight)."""
    import torch

    out: dict[str, float] = {}
    parts = getattr(job.dataset, "parts", {})
    model.eval()
    with torch.no_grad():
        for name, ds in parts.items():
            n = min(len(ds), CALIBRATION_SAMPLES)
            if n == 0:
                continue
            if name == "text":
                out["text"] = model.calibrate_scale_factor("text", [ds[i]["text"] for i in range(n)])
            else:
                x = torch.stack([ds[i]["image"] for i in range(n)])
                out[name] = model.calibrate_scale_factor(name, x)
    return out


def run_flows(cfg: TrainConfig) -> list[flows_mod.Flow]:
    """The flows of the multiflow stage (none when the run has no such stage)."""
    return flows_mod.parse_flows(cfg.flows) if "multiflow" in cfg.stages else []


def precheck(req: TrainConfig) -> tuple[Any, Any, list[flows_mod.Flow]]:
    """Cheap checks before any model is built: flows, schedule, data folders and modalities."""
    from .datasets import TrainingData

    req.loop.validate()
    if req.flow_schedule not in flows_mod.SCHEDULES:
        raise ConfigError(f"unknown flow schedule '{req.flow_schedule}'", f"use one of: {', '.join(flows_mod.SCHEDULES)}")
    flows = run_flows(req)
    if not req.data:
        raise DataError("no training data given", "pass --data PREPARED (a folder made by medm2g prepare or phantom)")
    for d in req.data:
        if not Path(d).is_dir():
            raise DataError(f"--data '{d}' is not a folder", "pass a folder made by medm2g prepare or medm2g phantom")
    data = TrainingData(list(req.data), "train")
    if not data.records:
        raise DataError("the data has no training samples", "check the split of the prepared folders")
    val = TrainingData(list(req.data), "val")
    if flows:
        avail = data.available()
        for f in flows:
            for side in (f.a, f.b):
                key = side[1] or side[0]
                if key not in avail:
                    raise DataError(
                        f"flow {f.name} needs {key} data, but the data has only: {', '.join(sorted(avail))}",
                        "add a prepared folder with that modality (--data) or drop the flow from --flows",
                    )
    return data, val, flows


def plan(req: TrainConfig, model: Any, checked: tuple[Any, Any, list[flows_mod.Flow]] | None = None
         ) -> tuple[list[Any], dict[str, Any]]:
    """Build every phase's job (per-stage data checks happen here) and the resolved run config."""
    data, val, flows = checked if checked is not None else precheck(req)
    jobs = []
    for stage in req.stages:
        jobs.append(stages_mod.build_stage(stage, model, data, req.options, flows=flows,
                                           schedule=req.flow_schedule, steps=req.loop.steps,
                                           val=val if val.records else None))
    flow_report = []
    if flows:
        from .trainable import cross_guidance_parameters

        flow_report = flows_mod.added_parameters(flows, lambda m: cross_guidance_parameters(model, m))
    config = {
        "kind": "finetune" if req.task else "pretrain",
        "task": req.task,
        "data": [str(d) for d in req.data],
        "data_names": data.names,
        "train_samples": len(data.records),
        "stages": [j.split() for j in jobs],
        "flows": [f.name for f in flows],
        "flow_schedule": req.flow_schedule if flows else None,
        "flow_blocks": jobs[-1].schedule.blocks() if flows and jobs[-1].schedule is not None else None,
        "flow_added_parameters": flow_report,
        "loop": asdict(req.loop),
        "stage_options": asdict(req.options),
        "steps_per_stage": req.loop.steps,
    }
    return jobs, config


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    keep = ("kind", "task", "data", "flows", "flow_schedule", "steps_per_stage", "model")
    out = {k: cfg.get(k) for k in keep}
    out["stages"] = [s["stage"] for s in cfg.get("stages", [])]
    loop = dict(cfg.get("loop", {}))
    for k in ("workers", "log_every", "tensorboard", "checkpoint_every", "keep_checkpoints"):
        loop.pop(k, None)  # may change on resume without changing the result
    out["loop"] = loop
    return out


def _quiet_libraries() -> None:
    """Silence the per-file progress bars transformers/huggingface_hub print while saving checkpoints."""
    import contextlib

    with contextlib.suppress(Exception):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def run(req: TrainConfig, reporter: Reporter | None = None, stop_after: int | None = None) -> RunSummary:
    """Run (or resume) a pretraining / fine-tuning run; returns its summary."""
    req = resolved(req)  # preset defaults (Table A3 for full) and total batch -> grad_accum
    _quiet_libraries()
    accelerator = loop_mod.make_accelerator(req.loop, cpu=req.cpu)
    run_dir = Path(req.run_dir)
    check_separate([run_dir], [*req.data, *([req.init] if req.init else [])])  # --overwrite must not delete them
    if run_dir.exists() and not (req.resume or req.overwrite):
        from ..errors import OutputExistsError

        raise OutputExistsError(f"run folder '{run_dir}' already exists",
                                "pass --resume to continue it or --overwrite to start over")
    from .model_api import adapt

    # Check and build everything before the run folder is touched: a bad config leaves no trace.
    checked = precheck(req)
    model, model_info = build_model(req)
    model = adapt(model)
    jobs, config = plan(req, model, checked)
    if accelerator.is_main_process:
        run_folder.ensure_run_dir(run_dir, resume=req.resume, overwrite=req.overwrite)
        run_folder.clean_partial(run_dir)
    accelerator.wait_for_everyone()
    config["model"] = model_info
    config["num_processes"] = accelerator.num_processes
    config["global_batch_size"] = req.loop.batch_size * req.loop.grad_accum * accelerator.num_processes

    resume_ckpt, resume_meta = (None, None)
    cfg_path = run_dir / CONFIG_FILE
    if req.resume and cfg_path.exists():
        old = _comparable(json.loads(cfg_path.read_text(encoding="utf-8")))
        new = _comparable(json.loads(json.dumps(config, default=run_folder.json_default)))  # tuples -> lists
        if old != new:
            diff = [k for k in new if old.get(k) != new.get(k)]
            raise ConfigError(f"--resume: the settings differ from the run in '{run_dir}' ({', '.join(diff)})",
                              "resume with the original options, or start a new run with another -o")
        accelerator.wait_for_everyone()
        resume_ckpt, resume_meta = prepare_resume(run_dir) if accelerator.is_main_process else (None, None)
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            resume_ckpt, resume_meta = prepare_resume(run_dir, main=False)
    done = run_dir / "summary.json"
    if req.resume and done.exists() and (run_dir / "model").is_dir():
        # Nothing left to do: the run finished; report it instead of training again.
        finished_summary = json.loads(done.read_text(encoding="utf-8"))
        return RunSummary(str(run_dir), str(run_dir / "model"), finished_summary.get("phases", []), config, None)
    if accelerator.is_main_process:
        run_folder.write_json(cfg_path, config)

    phases = []
    start_phase = 0
    if resume_meta is not None:
        names = [j.name for j in jobs]
        start_phase = names.index(resume_meta["phase"])
    for i, job in enumerate(jobs):
        if i < start_phase:
            if job.name == "autoencoders" and _recalibrates(req.options):
                _calibrate(job, model)  # not in the checkpoint: recomputed (deterministically) on resume
            continue
        ckpt = resume_ckpt if (resume_ckpt is not None and i == start_phase) else None
        res = loop_mod.run_phase(
            job, req.loop, accelerator, run_dir, global_offset=i * req.loop.steps, resume_from=ckpt,
            reporter=reporter, stop_after=stop_after, checkpoint_at_end=i < len(jobs) - 1,
        )
        phases.append(asdict(res))
        if stop_after is not None and res.steps < req.loop.steps:
            break
        if job.name == "autoencoders" and _recalibrates(req.options):
            phases[-1]["scale_factors"] = _calibrate(job, model)
    model_dir = run_dir / "model"
    finished = not (stop_after is not None and phases and phases[-1]["steps"] < req.loop.steps)
    if finished and accelerator.is_main_process:
        model.save_pretrained(model_dir, overwrite=True)  # the engine writes model folders atomically
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and finished:
        run_folder.write_json(run_dir / "summary.json", {"phases": phases, "model": str(model_dir)})
    return RunSummary(str(run_dir), str(model_dir), phases, config,
                      str(resume_ckpt) if resume_ckpt is not None else None)
