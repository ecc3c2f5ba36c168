"""The typed API behind ``medm2g pretrain`` and ``medm2g finetune``.

A run is a folder::

    RUN/config.json             resolved config: model, data, stages with trainable/frozen split,
                                flows with added parameters (Table A8 style), loop settings
    RUN/metrics.jsonl           one line per step: loss per term, lr, samples/s, epoch
    RUN/checkpoint-<step>/      model/ (engine layout) + state/ (optimizer, scheduler, RNG, weights)
                                + trainer_state.json (phase, step = data position)
    RUN/model/                  the final model folder, ready for translate/generate/evaluate

Everything that can be wrong with the request (unknown stage or flow, a modality missing from the
data, a preset that does not match ``--init``) is checked before the first step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io.outputs import check_separate
from . import flows as flows_mod
from . import loop as loop_mod
from . import stages as stages_mod
from . import tasks as tasks_mod

CONFIG_FILE = "config.json"


@dataclass
class RunRequest:
    """Everything a pretrain/finetune run needs; built by the command from options and --config."""

    run_dir: Path
    data: list[Path]
    preset: str | None = None
    init: Path | None = None
    stages: list[str] = field(default_factory=lambda: list(stages_mod.STAGES))
    flows: list[str] | None = None
    flow_schedule: str = "chain"
    loop: loop_mod.LoopConfig = field(default_factory=loop_mod.LoopConfig)
    options: stages_mod.StageOptions = field(default_factory=stages_mod.StageOptions)
    resume: bool = False
    overwrite: bool = False
    cpu: bool | None = None
    task: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    seed_model: int | None = None
    model_factory: Callable[[], Any] | None = None  # API use: build the model yourself (seeded by the caller)


@dataclass
class RunSummary:
    """What a finished run reports."""

    run_dir: str
    model_dir: str
    phases: list[dict[str, Any]]
    config: dict[str, Any]
    resumed_from: str | None = None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON training config (``examples/pretrain_tiny.yaml``)."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist", "check the --config path")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text) or {}
        else:
            cfg = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / JSONDecodeError
        raise ConfigError(f"config file '{path}' is not valid: {' '.join(str(exc).split())[:200]}",
                          "fix the syntax (YAML or JSON)") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping", "see examples/pretrain_tiny.yaml")
    # "task" and "resolved" are what --print-config adds: the task is checked against the command's,
    # "resolved" is informational (recomputed from the rest)
    known = {"preset", "init", "data", "stages", "flows", "flow_schedule", "train", "stage_options", "model", "seed",
             "task", "resolved"}
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"unknown key(s) in '{path}': {', '.join(sorted(unknown))}", f"use: {', '.join(sorted(known))}")
    return cfg


def apply_config(req: RunRequest, cfg: dict[str, Any], explicit: set[str]) -> RunRequest:
    """Fill ``req`` from a config file; options given on the command line (``explicit``) win."""
    if "preset" in cfg and "preset" not in explicit:
        req.preset = cfg["preset"]
    if cfg.get("init") is not None and "init" not in explicit:
        req.init = Path(cfg["init"])
    if "data" in cfg and "data" not in explicit:
        req.data = [Path(d) for d in (cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]])]
    if "stages" in cfg and "stages" not in explicit:
        req.stages = stages_mod.parse_stages(cfg["stages"])
    if cfg.get("flows") is not None and "flows" not in explicit:
        req.flows = list(cfg["flows"]) if isinstance(cfg["flows"], list) else str(cfg["flows"]).split(",")
    if "flow_schedule" in cfg and "flow_schedule" not in explicit:
        req.flow_schedule = cfg["flow_schedule"]
    if "model" in cfg:
        req.model_overrides = {**req.model_overrides, **_flatten(dict(cfg["model"]))}
    if cfg.get("task") is not None and req.task is not None and tasks_mod.get_task(str(cfg["task"])).name != req.task:
        raise ConfigError(f"the config was written for task '{cfg['task']}', not '{req.task}'",
                          f"run medm2g finetune {cfg['task']} with it, or drop its task key")
    if "seed" in cfg and "seed" not in explicit:
        req.loop.seed = int(cfg["seed"])
    train = dict(cfg.get("train") or {})
    fields = loop_mod.LoopConfig.__dataclass_fields__
    bad = set(train) - set(fields)
    if bad:
        raise ConfigError(f"unknown train setting(s): {', '.join(sorted(bad))}", f"use: {', '.join(fields)}")
    loop_updates: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                                    for k, v in train.items() if k not in explicit}
    req.loop = replace(req.loop, **loop_updates)
    so = dict(cfg.get("stage_options") or {})
    sfields = stages_mod.StageOptions.__dataclass_fields__
    bad = set(so) - set(sfields)
    if bad:
        raise ConfigError(f"unknown stage option(s): {', '.join(sorted(bad))}", f"use: {', '.join(sfields)}")
    option_updates: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in so.items()}
    req.options = replace(req.options, **option_updates)
    return req


# ------------------------------------------------------------------------------------------------


def _build_model(req: RunRequest) -> tuple[Any, dict[str, Any]]:
    """The model to train: ``--init`` folder, else a fresh ``--preset`` (seeded)."""
    import torch

    if req.model_factory is not None:
        torch.manual_seed(req.loop.seed if req.seed_model is None else req.seed_model)
        return req.model_factory(), {"preset": req.preset or "custom"}
    if req.init is not None:
        init = Path(req.init)
        if not (init / "model_index.json").is_file() and not (init / "medm2g.json").is_file():
            raise ConfigError(f"--init '{init}' is not a model folder", "point --init at a folder made by weights init or pretrain")
        from ..engine import MedM2G

        model = MedM2G.from_pretrained(init)
        _apply_init_overrides(model, req.model_overrides)
        model.upgrade_prompt_scale()  # function-preserving; older weights train with the current convention
        have = _preset_of(model)
        if req.preset and have and req.preset != have:
            raise ConfigError(f"--preset {req.preset} does not match --init '{init}', which is a '{have}' model",
                              f"drop --preset or pass --preset {have}")
        return model, {"init": str(init), "preset": have}
    if not req.preset:
        raise ConfigError("no model given", "pass --preset tiny|small|full, --init MODEL_DIR or --config FILE")
    from ..config import model_preset
    from ..engine import MedM2G

    cfg = model_preset(req.preset, **_flatten(req.model_overrides))  # unknown preset/field: ConfigError
    # A fresh model is a function of the seed, so a resumed run rebuilds the same starting point.
    seed = req.loop.seed if req.seed_model is None else req.seed_model
    torch.manual_seed(seed)
    model = MedM2G.from_config(cfg, seed=seed)
    return model, {"preset": req.preset, "overrides": req.model_overrides}


CALIBRATION_SAMPLES = 256


def _recalibrates(options: Any) -> bool:
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


# Fields of an existing model that a config may change: they change no parameter shape (the UNets
# and autoencoders are convolutional), e.g. continuing a 64 px model at 128 px, or fine-tuning an
# epsilon UNet into a v-prediction one (as Stable Diffusion 2's 768-v model came from its base).
RESOLUTION_FIELDS: tuple[str, ...] = ("image.image_size",)
# The noise schedule changes no parameter either: a config may fine-tune on another one (supplement
# C.3's beta 1e-4 -> 0.02 for MRI synthesis, tasks.py); the model folder then records it and sampling follows.
SCHEDULE_FIELDS: tuple[str, ...] = ("scheduler.beta_start", "scheduler.beta_end", "scheduler.beta_schedule")
INIT_MUTABLE_FIELDS: tuple[str, ...] = (*RESOLUTION_FIELDS, "scheduler.v_prediction", *SCHEDULE_FIELDS)


def _apply_init_overrides(model: Any, overrides: dict[str, Any]) -> None:
    """Apply a config's ``model:`` section to an ``--init`` model: resolution fields change, any
    other field must equal the model's (a config written for a fresh preset stays usable)."""
    for key, value in _flatten(overrides).items():
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


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _preset_of(model: Any) -> str | None:
    cfg = getattr(model, "config", None)
    for name in ("preset", "name"):
        v = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(v, str):
            return v
        if isinstance(cfg, dict) and isinstance(cfg.get(name), str):
            return cfg[name]
    return None


def _flows(req: RunRequest) -> list[flows_mod.Flow]:
    return flows_mod.parse_flows(req.flows) if req.flows is not None else flows_mod.parse_flows(None)


def precheck(req: RunRequest) -> tuple[Any, Any, list[flows_mod.Flow]]:
    """Cheap checks before any model is built: stages, flows, schedule, data folders and modalities."""
    from .datasets import TrainingData

    req.loop.validate()
    req.stages = stages_mod.parse_stages(req.stages)
    if req.flow_schedule not in flows_mod.SCHEDULES:
        raise ConfigError(f"unknown flow schedule '{req.flow_schedule}'", f"use one of: {', '.join(flows_mod.SCHEDULES)}")
    flows = _flows(req) if "multiflow" in req.stages else []
    if not req.data:
        raise DataError("no training data given", "pass --data PREPARED (a folder made by medm2g prepare or phantom)")
    for d in req.data:
        if not Path(d).is_dir():
            raise DataError(f"--data '{d}' is not a folder", "pass a folder made by medm2g prepare or medm2g phantom")
    data = TrainingData(req.data, "train")
    if not data.records:
        raise DataError("the data has no training samples", "check the split of the prepared folders")
    val = TrainingData(req.data, "val")
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


def plan(req: RunRequest, model: Any, checked: tuple[Any, Any, list[flows_mod.Flow]] | None = None
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


def run(req: RunRequest, reporter: loop_mod.Reporter | None = None, stop_after: int | None = None) -> RunSummary:
    """Run (or resume) a pretraining / fine-tuning run; returns its summary."""
    from .print_config import resolve_loop

    req.loop.validate()
    req.loop = resolve_loop(req)  # preset defaults (Table A3 for full) and total batch -> grad_accum
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
    model, model_info = _build_model(req)
    model = adapt(model)
    jobs, config = plan(req, model, checked)
    if accelerator.is_main_process:
        loop_mod.ensure_run_dir(run_dir, resume=req.resume, overwrite=req.overwrite)
        loop_mod.clean_partial(run_dir)
    accelerator.wait_for_everyone()
    config["model"] = model_info
    config["num_processes"] = accelerator.num_processes
    config["global_batch_size"] = req.loop.batch_size * req.loop.grad_accum * accelerator.num_processes

    resume_ckpt, resume_meta = (None, None)
    cfg_path = run_dir / CONFIG_FILE
    if req.resume and cfg_path.exists():
        old = _comparable(json.loads(cfg_path.read_text(encoding="utf-8")))
        new = _comparable(json.loads(json.dumps(config, default=loop_mod._json_default)))  # tuples -> lists
        if old != new:
            diff = [k for k in new if old.get(k) != new.get(k)]
            raise ConfigError(f"--resume: the settings differ from the run in '{run_dir}' ({', '.join(diff)})",
                              "resume with the original options, or start a new run with another -o")
        accelerator.wait_for_everyone()
        resume_ckpt, resume_meta = loop_mod.prepare_resume(run_dir) if accelerator.is_main_process else (None, None)
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            resume_ckpt, resume_meta = loop_mod.prepare_resume(run_dir, main=False)
    done = run_dir / "summary.json"
    if req.resume and done.exists() and (run_dir / "model").is_dir():
        # Nothing left to do: the run finished; report it instead of training again.
        finished_summary = json.loads(done.read_text(encoding="utf-8"))
        return RunSummary(str(run_dir), str(run_dir / "model"), finished_summary.get("phases", []), config, None)
    if accelerator.is_main_process:
        loop_mod.write_json(cfg_path, config)

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
        loop_mod.write_json(run_dir / "summary.json", {"phases": phases, "model": str(model_dir)})
    return RunSummary(str(run_dir), str(model_dir), phases, config,
                      str(resume_ckpt) if resume_ckpt is not None else None)


def _data_keys(data: Sequence[Path]) -> set[str] | None:
    """Keys of the training split of the given folders (None when there is no readable data)."""
    from .datasets import TrainingData

    if not data or not all(Path(d).is_dir() for d in data):
        return None
    try:
        return TrainingData(list(data), "train").available()
    except DataError:
        return None


def finetune_request(
    task: str, init: Path | None, data: Sequence[Path], run_dir: Path | None, *, dataset_name: str | None = None,
    **overrides: Any,
) -> RunRequest:
    """A :class:`RunRequest` for one of the five fine-tuning tasks (supplement C), overridable.

    The task trains the diffusion parts its evaluation uses (:func:`tasks.resolve_task`), or the
    multiflow stage when ``flows`` are given; a task schedule marked ``apply_schedule`` becomes a model
    override (none is: C.3's is recorded only, see tasks.py).
    """
    loop_keys = set(loop_mod.LoopConfig.__dataclass_fields__)
    if dataset_name is None and data:
        meta = Path(data[0]) / "dataset.json"
        if meta.is_file():
            try:
                dataset_name = str(json.loads(meta.read_text(encoding="utf-8")).get("name") or "") or None
            except (json.JSONDecodeError, AttributeError):
                dataset_name = None
    task_over = {k: v for k, v in overrides.items()
                 if k in ("batch_size", "lr", "adam_betas", "max_report_length", "flows", "pairs")}
    preset = tasks_mod.resolve_task(task, dataset_name, _data_keys(data), **task_over)
    loop_over = {k: v for k, v in overrides.items() if k in loop_keys and v is not None and k not in task_over}
    loop_cfg = loop_mod.LoopConfig(
        batch_size=preset.batch_size, lr=preset.lr, adam_betas=preset.adam_betas,
        plateau_factor=preset.plateau_factor, plateau_patience=preset.plateau_patience, **loop_over,
    )
    multiflow = preset.stage == "multiflow"
    options = stages_mod.StageOptions(pairs=None if multiflow else preset.pairs,
                                      max_report_length=preset.max_report_length,
                                      cache_latents=bool(overrides.get("cache_latents")))
    schedule = {f"scheduler.{k}": v for k, v in (("beta_start", preset.beta_start), ("beta_end", preset.beta_end),
                                                   ("beta_schedule", preset.beta_schedule))
                if v is not None and preset.apply_schedule}
    return RunRequest(
        run_dir=Path(run_dir) if run_dir is not None else Path(), data=[Path(d) for d in data],
        preset=overrides.get("preset"), init=Path(init) if init is not None else None,
        stages=[preset.stage], flows=list(preset.flows) if multiflow else None, loop=loop_cfg, options=options,
        resume=bool(overrides.get("resume")), overwrite=bool(overrides.get("overwrite")), task=preset.name,
        model_overrides=schedule,
    )
