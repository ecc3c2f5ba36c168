"""One training configuration: :class:`TrainConfig`, built by :func:`build_config` and nothing else.

A pretrain or fine-tuning run is described by one frozen :class:`TrainConfig` holding its optimisation
settings (:class:`LoopConfig`, what the loop reads) and its stage knobs (:class:`StageOptions`, what
the stages read). :func:`build_config` assembles it in three layers, each overriding the one before:

1. **defaults** — the dataclass defaults, or for ``finetune TASK`` the task's supplement-C values
   (:mod:`.tasks`: batch size, lr, Adam betas, plateau decay, diffusion pairs, report length);
2. **the config file** (YAML or JSON, ``--config``; ``extends: base.yaml`` deep-merges a base recipe
   under it, see :func:`load_config_file`);
3. **command-line options that were given** (``None``/``False`` means "not given": a flag can switch a
   setting on, never off).

This module imports neither torch nor the model, so building (and printing) a configuration is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

STAGES: tuple[str, ...] = ("autoencoders", "alignment", "diffusion", "multiflow")
"""The four pre-training stages of method.md section 1.5, in their canonical order."""

_STAGE_ALIASES = {"ae": "autoencoders", "align": "alignment", "ldm": "diffusion", "flows": "multiflow",
                  "cross": "multiflow"}


def parse_stages(spec: str | Sequence[str] | None) -> list[str]:
    """Parse ``autoencoders,alignment`` (or ``all``); unknown stages are refused; order is canonical."""
    if spec is None or spec == "all" or list(spec) == ["all"]:
        return list(STAGES)
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out = []
    for n in names:
        n = _STAGE_ALIASES.get(n, n)
        if n not in STAGES:
            raise ConfigError(f"unknown stage '{n}'", f"use one or more of: {', '.join(STAGES)} (or all)")
        out.append(n)
    return [s for s in STAGES if s in out]


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings of one training phase (a stage or a fine-tuning task)."""

    steps: int = 100
    batch_size: int = 4  # per process, per micro-step
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # "constant" after warmup, or "cosine" decay to 0 at the last step
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int | None = None
    seed: int = 0
    workers: int = 0
    log_every: int = 1
    tensorboard: bool = False
    plateau_factor: float | None = None
    plateau_patience: int = 0
    val_batches: int = 4
    branch_lr: dict[str, float] | None = None  # per-branch AdamW lr (Table A3; training/optim.py)
    total_batch_size: int | None = None  # processes x batch_size x grad_accum; sets grad_accum

    def validate(self) -> None:
        """Refuse impossible settings before anything is built."""
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}", "pass --steps N with N >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}", "pass --batch-size N with N >= 1")
        if self.grad_accum < 1:
            raise ConfigError(f"--grad-accum must be at least 1, got {self.grad_accum}", "pass --grad-accum N with N >= 1")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}", "pass a learning rate such as 1e-4")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"unknown lr_schedule '{self.lr_schedule}'", "use constant or cosine")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"unknown --mixed-precision '{self.mixed_precision}'", "use no, fp16 or bf16")
        if self.checkpoint_every < 0 or self.workers < 0:
            raise ConfigError("--checkpoint-every and --workers cannot be negative", "pass 0 or a positive number")


@dataclass(frozen=True)
class StageOptions:
    """Knobs shared by the stages."""

    cond_drop_prob: float = 0.1  # SD convention (method.md pitfall 3)
    tau: float = 0.07  # InfoNCE temperature, losses.DEFAULT_TAU (a literal: this module stays torch-free)
    lambda_1: float = 5e-3  # Eq. 4 off-diagonal weight, losses.LAMBDA_1
    invariance_weight: float = 1.0  # beta of L_align = L_CA + beta * sum_m L_VI^m
    kl_weight: float = 1e-6  # KL weight of the image autoencoders (LDM's kl-f8 setting)
    text_kl_weight: float | None = None  # Optimus beta; None: the model's config.text.kl_beta
    cache_latents: bool = False
    # after the autoencoders stage: latent scale factor = 1/std on training samples (CoDi scale_by_std)
    calibrate_scale: bool = True
    targets: tuple[str, ...] | None = None  # diffusion/autoencoders: modalities to train (None: all the data has)
    # diffusion: explicit parts "target<source[+source]" (e.g. "ct<t1", "pd<t1+t2", "xray<text"),
    # overriding the automatic choice of one condition per target; image sources also condition
    # spatially (context tokens or concat slots), as translate/synthesize do at inference.
    pairs: tuple[str, ...] | None = None
    max_report_length: int | None = None
    # autoencoders: train on random square crops of this side (the KL autoencoders are convolutional,
    # as LDM trains its f8 autoencoder on 256 px crops); None trains on whole images
    ae_crop: int | None = None
    # autoencoders: train the image decoders only (encoder and quant_conv frozen). The latents, and
    # so every diffuser trained on them, stay valid, as Stability's fine-tuned ("ft-MSE") SD decoders
    # keep the original latent space; the latent scale factor is kept, not recalibrated.
    ae_decoder_only: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Everything a pretrain/finetune run needs (built by :func:`build_config`; the API may also
    construct one directly). Sequences are stored as tuples and stage names in canonical order."""

    run_dir: Path = Path()
    data: tuple[Path, ...] = ()
    preset: str | None = None
    init: Path | None = None
    stages: tuple[str, ...] = STAGES
    flows: tuple[str, ...] | None = None
    flow_schedule: str = "chain"
    loop: LoopConfig = field(default_factory=LoopConfig)
    options: StageOptions = field(default_factory=StageOptions)
    resume: bool = False
    overwrite: bool = False
    cpu: bool | None = None
    task: str | None = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    seed_model: int | None = None
    model_factory: Callable[[], Any] | None = None  # API use: build the model yourself (seeded by the caller)

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ once, at construction
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        object.__setattr__(self, "data", tuple(Path(d) for d in self.data))
        object.__setattr__(self, "init", Path(self.init) if self.init is not None else None)
        object.__setattr__(self, "stages", tuple(parse_stages(self.stages)))
        object.__setattr__(self, "flows", tuple(self.flows) if self.flows is not None else None)


# --------------------------------------------------------------------------------------------
# Config files

FILE_KEYS = ("preset", "init", "data", "stages", "flows", "flow_schedule", "train", "stage_options", "model",
             "seed", "task", "resolved", "extends")
"""Top-level keys of a config file. ``task`` and ``resolved`` are what ``--print-config`` adds: the task
is checked against the command's, ``resolved`` is informational (recomputed from the rest)."""


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist", "check the --config path (and its extends: key)")
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
    unknown = set(cfg) - set(FILE_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) in '{path}': {', '.join(sorted(unknown))}", f"use: {', '.join(sorted(FILE_KEYS))}")
    return cfg


def load_config_file(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML or JSON training config (``examples/pretrain_tiny.yaml``).

    ``extends: FILE`` (a path relative to this file, or a list of them, merged in order) names base
    recipes: the file's own keys are deep-merged on top of them, so a recipe states only what it
    changes (``examples/demo_weights*.yaml``).
    """
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config file '{path}' extends itself", "remove the loop of extends: keys")
    cfg = _read_mapping(path)
    bases = cfg.pop("extends", None)
    if bases is None:
        return cfg
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = deep_merge(merged, load_config_file(path.parent / str(base), (*_seen, path.resolve())))
    return deep_merge(merged, cfg)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"image": {"image_size": 128}}`` -> ``{"image.image_size": 128}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _section(cls: type, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A ``train:``/``stage_options:`` section checked against ``cls``'s fields (lists become tuples)."""
    names = [f.name for f in fields(cls)]
    bad = set(values) - set(names)
    if bad:
        raise ConfigError(f"unknown {what}(s): {', '.join(sorted(bad))}", f"use: {', '.join(names)}")
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}


def _split_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, (list, tuple)) else str(value).split(",")


# --------------------------------------------------------------------------------------------
# The builder


def _dataset_name(data: Sequence[Path]) -> str | None:
    meta = Path(data[0]) / "dataset.json" if data else None
    if meta is None or not meta.is_file():
        return None
    try:
        return str(json.loads(meta.read_text(encoding="utf-8")).get("name") or "") or None
    except (json.JSONDecodeError, AttributeError):
        return None


def _data_keys(data: Sequence[Path]) -> set[str] | None:
    """Keys of the training split of the given folders (None when there is no readable data)."""
    from ..errors import DataError
    from .datasets import TrainingData

    if not data or not all(Path(d).is_dir() for d in data):
        return None
    try:
        return TrainingData(list(data), "train").available()
    except DataError:
        return None


def _task_defaults(task: str, data: Sequence[Path], dataset_name: str | None, given: Mapping[str, Any]) -> TrainConfig:
    """Layer 1 of a fine-tuning run: the task preset (supplement C) for this data.

    The options that select what the task trains (``flows``, ``pairs``, ``max_report_length``, ``batch_size``,
    ``lr``) take part in resolving it, so e.g. ``--flows`` turns the task into a multiflow run. The data
    that names the dataset is the command line's (a ``--config``'s ``data:`` does not re-resolve the task).
    """
    from . import tasks

    if dataset_name is None:
        dataset_name = _dataset_name(data)
    preset = tasks.resolve_task(task, dataset_name, _data_keys(data), **given)
    multiflow = preset.stage == "multiflow"
    schedule = {f"scheduler.{k}": v for k, v in (("beta_start", preset.beta_start), ("beta_end", preset.beta_end),
                                                   ("beta_schedule", preset.beta_schedule))
                if v is not None and preset.apply_schedule}
    loop = LoopConfig(batch_size=preset.batch_size, lr=preset.lr, adam_betas=preset.adam_betas,
                      plateau_factor=preset.plateau_factor, plateau_patience=preset.plateau_patience)
    options = StageOptions(pairs=None if multiflow else tuple(preset.pairs), max_report_length=preset.max_report_length)
    return TrainConfig(stages=(preset.stage,), flows=tuple(preset.flows) if multiflow else None, loop=loop,
                       options=options, task=preset.name, model_overrides=schedule)


def _apply_file(cfg: TrainConfig, file: Mapping[str, Any]) -> TrainConfig:
    """Layer 2: a config file's values over ``cfg``."""
    from . import tasks

    top: dict[str, Any] = {}
    if "preset" in file:
        top["preset"] = file["preset"]
    if file.get("init") is not None:
        top["init"] = Path(file["init"])
    if "data" in file:
        top["data"] = [Path(d) for d in (file["data"] if isinstance(file["data"], list) else [file["data"]])]
    if "stages" in file:
        top["stages"] = parse_stages(file["stages"])
    if file.get("flows") is not None:
        top["flows"] = _split_list(file["flows"])
    if "flow_schedule" in file:
        top["flow_schedule"] = file["flow_schedule"]
    if "model" in file:
        top["model_overrides"] = {**cfg.model_overrides, **flatten(dict(file["model"]))}
    if file.get("task") is not None and cfg.task is not None and tasks.get_task(str(file["task"])).name != cfg.task:
        raise ConfigError(f"the config was written for task '{file['task']}', not '{cfg.task}'",
                          f"run medm2g finetune {file['task']} with it, or drop its task key")
    # a top-level seed: the loop's, unless train: names one too
    loop_vals: dict[str, Any] = {"seed": int(file["seed"])} if "seed" in file else {}
    loop_vals.update(_section(LoopConfig, dict(file.get("train") or {}), "train setting"))
    option_vals = _section(StageOptions, dict(file.get("stage_options") or {}), "stage option")
    return replace(cfg, **top, loop=replace(cfg.loop, **loop_vals), options=replace(cfg.options, **option_vals))


def build_config(
    source: Path | Mapping[str, Any] | None = None, *,
    task: str | None = None,
    run_dir: Path | None = None,
    data: Sequence[Path] | None = None,
    preset: str | None = None,
    init: Path | None = None,
    stages: str | Sequence[str] | None = None,
    flows: str | Sequence[str] | None = None,
    flow_schedule: str | None = None,
    pairs: str | Sequence[str] | None = None,
    max_report_length: int | None = None,
    cache_latents: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    cpu: bool = False,
    dataset_name: str | None = None,
    default_preset: str | None = None,
    train: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The one way to assemble a run: defaults (or ``task``'s) < ``source`` < the options given.

    ``source`` is a config file (``--config``) or an already-read mapping. ``train`` holds
    :class:`LoopConfig` fields set on the command line; like every option here, ``None``/``False``
    means "not given" and leaves the lower layers' value. ``default_preset`` is the preset of layer 1
    (``finetune --print-config`` without ``--init`` describes ``full``); ``dataset_name`` overrides the
    name a task reads from the first data folder.
    """
    given_train = {k: v for k, v in (train or {}).items() if v is not None and v is not False}
    _section(LoopConfig, given_train, "train setting")
    flow_list = [f.strip() for f in _split_list(flows) if f.strip()] if flows else []
    pair_list = [p.strip() for p in _split_list(pairs) if p.strip()] if pairs else []
    data = list(data or [])
    # layer 1: defaults
    cfg = TrainConfig(preset=default_preset)
    if task is not None:
        selectors = {"batch_size": given_train.get("batch_size"), "lr": given_train.get("lr"),
                     "max_report_length": max_report_length, "flows": tuple(flow_list) or None,
                     "pairs": tuple(pair_list) or None}
        cfg = replace(_task_defaults(task, data, dataset_name, selectors), preset=default_preset)
    defaults = cfg
    # layer 2: the config file
    if source is not None:
        cfg = _apply_file(cfg, source if isinstance(source, Mapping) else load_config_file(source))
    # layer 3: what the command line gave. For a task, the options that took part in resolving it
    # (layer 1) win as the task resolved them (--flows makes it a multiflow run without pairs).
    top: dict[str, Any] = {k: v for k, v in (("preset", preset), ("init", init), ("data", data),
                                             ("flow_schedule", flow_schedule)) if v}
    if stages:
        top["stages"] = parse_stages(stages)
    over_options: dict[str, Any] = {}
    if flow_list:
        top["flows"] = flow_list if task is None else defaults.flows
        if task is not None:
            top["stages"] = defaults.stages
            over_options["pairs"] = defaults.options.pairs
    if pair_list:
        over_options["pairs"] = tuple(pair_list) if task is None else defaults.options.pairs
    if max_report_length is not None:
        over_options["max_report_length"] = max_report_length
    if cache_latents:
        over_options["cache_latents"] = True
    return replace(cfg, **top, run_dir=Path(run_dir) if run_dir is not None else Path(), resume=resume,
                   overwrite=overwrite, cpu=True if cpu else None, loop=replace(cfg.loop, **given_train),
                   options=replace(cfg.options, **over_options))
