"""The Accelerate-based training loop: one loop for every stage and fine-tuning task.

Written in the style of the diffusers training scripts (``train_text_to_image.py``): an
``Accelerator`` owns the device, mixed precision, gradient accumulation and state saving; the loop
is a flat ``for step`` with ``accelerator.accumulate``/``backward``/``clip_grad_norm_``.

Decisions (why the loop looks the way it does):

* **Exact resume.** Everything random in a step (which samples, noise, timesteps, condition
  dropout, augmentations, dropout masks) is a pure function of ``(seed, step, micro-step, rank)``:
  the batch indices come from a per-epoch seeded permutation (:class:`StepBatchSampler`) and the
  global RNG is re-seeded at every micro-step. A checkpoint therefore only needs the weights, the
  optimizer/scheduler state (``accelerator.save_state``) and the step; a run killed after a
  checkpoint and resumed ends with bit-identical weights on CPU.
* **Data parallel without DDP wrapping.** Stages train different subsets of a large model, and
  flows switch which parameters are used from step to step; instead of DDP (which needs a fixed
  set of used parameters) gradients are averaged across processes explicitly at each
  synchronising step with ``accelerator.reduce``. With one process this is a no-op.
* **Atomic checkpoints.** ``RUN/checkpoint-<step>/`` is assembled in a temporary folder (all ranks
  write their RNG state into it) and renamed into place by the main process; a folder named
  ``checkpoint-*`` is always complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConfigError
from ..io.atomic import atomic_path, check_output
from ..io.outputs import check_replaceable, write_marker
from . import optim as optim_mod
from .checkpoints import TRAINER_STATE, load_checkpoint, save_checkpoint
from .checkpoints import prepare_resume as prepare_resume  # part of loop's interface (runner, tests)

CHECKPOINT_PREFIX = "checkpoint-"
METRICS_FILE = "metrics.jsonl"


@dataclass
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


class TrainJob(Protocol):
    """What the loop needs from a stage or task (see :mod:`medm2g_cli.training.stages`)."""

    name: str
    module: torch.nn.Module  # holds every parameter of the model (trainable or not)
    dataset: Dataset
    val_dataset: Dataset | None

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def collate(self, items: list[Any]) -> Any: ...

    def compute(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        """Loss terms for one micro-batch; ``"loss"`` is the total that is back-propagated."""
        ...

    def before_step(self, step: int) -> None:
        """Hook called before each optimizer step (flows freeze/unfreeze sides here)."""
        ...

    def save_model(self, path: Path) -> None:
        """Write a ready-to-use model folder to ``path`` (a fresh, empty folder)."""
        ...


# --------------------------------------------------------------------------------------------
# Deterministic data order


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (splitmix-style), stable across processes and runs."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h ^= (int(v) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class StepBatchSampler(Sampler[list[int]]):
    """Yields the micro-batches of steps ``start_step .. total_steps-1`` for one process.

    The data stream is the concatenation of per-epoch permutations seeded by ``(seed, epoch)``;
    micro-batch ``(step, micro, rank)`` takes the next ``batch_size`` positions of that stream, so
    the batch of any step is known without replaying the run (the data position is just the step).
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, start_step: int, total_steps: int,
        grad_accum: int = 1, rank: int = 0, world: int = 1,
    ) -> None:
        if n < 1:
            raise ConfigError("the training set is empty", "check --data and the split of the prepared folder")
        self.n, self.bs, self.seed = n, batch_size, seed
        self.start, self.total, self.accum, self.rank, self.world = start_step, total_steps, grad_accum, rank, world
        self._perm_cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, 17))
            self._perm_cache = {epoch: torch.randperm(self.n, generator=g)}
        return self._perm_cache[epoch]

    def indices(self, step: int, micro: int) -> list[int]:
        """Dataset indices of one micro-batch of this process."""
        first = ((step * self.accum + micro) * self.world + self.rank) * self.bs
        out = []
        for pos in range(first, first + self.bs):
            out.append(int(self._perm(pos // self.n)[pos % self.n]))
        return out

    def epoch_of(self, step: int) -> float:
        """How many passes over the data have been made before ``step``."""
        return step * self.accum * self.world * self.bs / self.n

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            for micro in range(self.accum):
                yield self.indices(step, micro)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.accum


# --------------------------------------------------------------------------------------------
# Run folder helpers


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step (temporary ``.part`` folders are ignored)."""
    out: list[tuple[int, Path]] = []
    if not run_dir.is_dir():
        return out
    for p in run_dir.iterdir():
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / TRAINER_STATE).is_file():
            try:
                out.append((int(p.name[len(CHECKPOINT_PREFIX):]), p))
            except ValueError:
                continue
    return sorted(out)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1][1] if dirs else None


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (and a torn last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("global_step", -1) <= last_step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


class Reporter(Protocol):
    """Progress sink (the command renders it with rich; the API stays UI-free)."""

    def start(self, phase: str, total: int, done: int) -> None: ...

    def update(self, record: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class NullReporter:
    """A reporter that shows nothing."""

    def start(self, phase: str, total: int, done: int) -> None:  # noqa: D102
        pass

    def update(self, record: dict[str, Any]) -> None:  # noqa: D102
        pass

    def stop(self) -> None:  # noqa: D102
        pass


# --------------------------------------------------------------------------------------------
# EMA


class EMA:
    """Exponential moving average of the trainable parameters (shadow kept in fp32)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """shadow = d * shadow + (1 - d) * param, with the usual warm-up d = min(decay, (1+s)/(10+s))."""
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the model (to save or evaluate)."""
        backup = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params, strict=True):
                p.copy_(s.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for b, p in zip(backup, self.params, strict=True):
                    p.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to store in a checkpoint."""
        return {f"ema.{i}": s.contiguous() for i, s in enumerate(self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shadow weights from :meth:`state_dict`."""
        for i in range(len(self.shadow)):
            self.shadow[i] = state[f"ema.{i}"].float().clone()


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class PhaseResult:
    """What a phase did: steps, final loss terms, throughput and wall time."""

    name: str
    steps: int
    start_step: int
    final: dict[str, float] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0
    seconds: float = 0.0


def make_accelerator(cfg: LoopConfig, cpu: bool | None = None) -> Any:
    """An ``Accelerator`` for the run (CPU when no GPU is visible or ``cpu`` is set)."""
    from accelerate import Accelerator

    if cpu is None:
        cpu = not torch.cuda.is_available()
    mp = cfg.mixed_precision
    if cpu and mp == "fp16":
        raise ConfigError("fp16 mixed precision needs a GPU", "use --mixed-precision bf16 or no on CPU")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # One process: Accelerate keeps its state in a process-wide singleton, so a second run in
        # the same Python process (the API, a notebook, the test suite) with other settings would be
        # refused. Under `accelerate launch` the launcher's state is kept.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum)


def _seed_everything(value: int) -> None:
    import random

    random.seed(value % (2**32))
    torch.manual_seed(value)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(value % (2**32))


def _enable_gradient_checkpointing(module: torch.nn.Module) -> int:
    """Turn on activation checkpointing in every diffusers/transformers sub-model that offers it."""
    n = 0
    for m in module.modules():
        # getattr: these hooks are duck-typed (diffusers / transformers), not part of nn.Module
        enable = getattr(m, "enable_gradient_checkpointing", None)
        legacy = getattr(m, "gradient_checkpointing_enable", None)
        if enable is not None and getattr(m, "_supports_gradient_checkpointing", False):
            enable()
            n += 1
        elif legacy is not None and getattr(m, "supports_gradient_checkpointing", False):
            legacy()
            n += 1
    return n


def _adamw(params: list[Any], **kw: Any) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where torch has one for the parameters' device (CPU and CUDA in
    torch >= 2.4): the per-tensor Python loop of the default implementation cost 16 % of a small-preset
    training step on CPU (profiled in `make bench` figure 5). Falls back to the default elsewhere."""
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # device or dtype without a fused kernel
        return torch.optim.AdamW(params, **kw)


def _lr_lambda(warmup: int, schedule: str = "constant", total: int = 0) -> Callable[[int], float]:
    """Linear warmup, then constant or half-cosine decay to 0 at step ``total`` (LDM / diffusers)."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine" and total > warmup:
            done = min(1.0, (step - warmup) / (total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0

    return f


def run_phase(
    job: TrainJob,
    cfg: LoopConfig,
    accelerator: Any,
    run_dir: Path,
    *,
    global_offset: int = 0,
    resume_from: Path | None = None,
    reporter: Reporter | None = None,
    extra_state: dict[str, Any] | None = None,
    stop_after: int | None = None,
    checkpoint_at_end: bool = False,
) -> PhaseResult:
    """Train ``job`` for ``cfg.steps`` optimizer steps, checkpointing into ``run_dir``.

    ``global_offset`` is the number of steps earlier phases of the same run took (checkpoint
    names and log lines use the global step). ``resume_from`` is a checkpoint of *this* phase.
    ``stop_after`` ends the phase early after that many steps (used by tests);
    ``checkpoint_at_end`` also checkpoints the last step (when a later phase follows).
    """
    reporter = reporter or NullReporter()
    cfg.validate()
    module = job.module
    module.to(accelerator.device)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(module)
    params = job.trainable_parameters()
    if not params:
        raise ConfigError(f"phase '{job.name}' has no trainable parameters", "check --stages and the model preset")
    for p in module.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    betas = cast(tuple[float, float], tuple(cfg.adam_betas))
    optimizer = _adamw(optim_mod.param_groups(job, cfg.lr, cfg.branch_lr), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.warmup_steps, cfg.lr_schedule, cfg.steps))
    plateau = None
    if cfg.plateau_factor:
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    optimizer = accelerator.prepare(optimizer)
    # Not registered with accelerate (its custom-object loader unpickles): see training/checkpoints.py.
    schedulers = [scheduler] + ([plateau] if plateau is not None else [])
    ema = EMA(params, cfg.ema_decay) if cfg.ema else None

    start = 0
    if resume_from is not None:
        start = load_checkpoint(resume_from, accelerator, module, ema, job.name, schedulers)

    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = StepBatchSampler(
        len(cast(Sized, job.dataset)), cfg.batch_size, seed=_mix(cfg.seed, global_offset), start_step=start,
        total_steps=cfg.steps, grad_accum=cfg.grad_accum, rank=rank, world=world,
    )
    loader = DataLoader(
        job.dataset, batch_sampler=sampler, collate_fn=job.collate, num_workers=cfg.workers,
        persistent_workers=False,
    )
    metrics_path = run_dir / METRICS_FILE
    tb = _tensorboard(run_dir, cfg) if accelerator.is_main_process else None
    result = PhaseResult(job.name, cfg.steps, start)
    reporter.start(job.name, cfg.steps, start)
    set_mode = getattr(job, "set_train_mode", None)
    if set_mode is not None:
        set_mode()  # trainable components in train mode, frozen ones in eval (no dropout noise)
    else:
        module.train()
    t0 = time.perf_counter()
    seen = 0
    step = start
    micro = 0
    acc_terms: dict[str, float] = {}
    last_epoch = int(sampler.epoch_of(start))
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    batches = iter(loader)
    while step < end:
        batch = next(batches)
        # Every random draw of this micro-step is a function of (seed, step, micro, rank).
        _seed_everything(_mix(cfg.seed, global_offset + step, micro, rank))
        if micro == 0:
            job.before_step(step)
        with accelerator.accumulate(module), accelerator.autocast():
            terms = job.compute(batch, step)
            accelerator.backward(terms["loss"])
            if accelerator.sync_gradients:
                if world > 1:
                    _all_reduce_grads(params, accelerator)
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        for k, v in terms.items():
            acc_terms[k] = acc_terms.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        seen += cfg.batch_size * world
        micro += 1
        if micro < cfg.grad_accum:
            continue
        micro = 0
        if ema is not None:
            ema.update(step)
        step += 1
        record = _reduce_terms(acc_terms, accelerator)
        acc_terms = {}
        if not result.first:
            result.first = dict(record)
        result.final = dict(record)
        elapsed = time.perf_counter() - t0
        rec = {
            "phase": job.name, "step": step, "global_step": global_offset + step,
            **{f"loss/{k}" if k != "loss" else "loss": v for k, v in record.items()},
            "lr": optimizer.param_groups[0]["lr"], "samples_per_s": seen / max(elapsed, 1e-9),
            **({f"lr/{g.get('branch', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)} if len(optimizer.param_groups) > 1 else {}),
            "epoch": sampler.epoch_of(step), "time": time.time(),
        }
        epoch_now = int(sampler.epoch_of(step))
        if plateau is not None and epoch_now > last_epoch and job.val_dataset is not None:
            val = _validate(job, cfg, accelerator)
            plateau.step(val)
            rec["val_loss"] = val
        last_epoch = epoch_now
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == end):
            with open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if tb is not None:
                for k, v in rec.items():
                    if isinstance(v, float) and k not in ("time",):
                        tb.add_scalar(k, v, global_offset + step)
        reporter.update(rec)
        periodic = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps
        # The end of a phase that another phase follows is checkpointed too, so a run killed early
        # in the next phase does not redo this one.
        if periodic or (checkpoint_at_end and cfg.checkpoint_every and step == cfg.steps):
            save_checkpoint(run_dir, global_offset + step, job, accelerator, ema,
                            {"phase": job.name, "phase_step": step, **(extra_state or {})}, cfg.keep_checkpoints,
                            schedulers)
    result.seconds = time.perf_counter() - t0
    result.samples_per_s = seen / max(result.seconds, 1e-9)
    result.steps = step
    reporter.stop()
    if tb is not None:
        tb.close()
    if ema is not None:
        # The rest of the run (next phase, final model) continues from the averaged weights.
        with torch.no_grad():
            for s, p in zip(ema.shadow, ema.params, strict=True):
                p.copy_(s.to(p.dtype))
    accelerator.wait_for_everyone()
    # The next phase prepares its own optimizer/scheduler; accelerate's save_state/load_state
    # expect exactly the objects of the current phase.
    accelerator._optimizers.clear()
    accelerator._schedulers.clear()
    accelerator._custom_objects.clear()
    return result


def _all_reduce_grads(params: list[torch.nn.Parameter], accelerator: Any) -> None:
    """Average gradients over processes in one flat buffer (unused parameters count as zero)."""
    # Parameters frozen for this step (chain schedule) are skipped; the frozen set is the same on
    # every process because it is a function of the step.
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
        offset += n


def _reduce_terms(terms: dict[str, float], accelerator: Any) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return terms
    keys = sorted(terms)
    t = torch.tensor([terms[k] for k in keys], device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


@torch.no_grad()
def _validate(job: TrainJob, cfg: LoopConfig, accelerator: Any) -> float:
    """Mean total loss over the first ``cfg.val_batches`` validation batches (fixed seeds)."""
    assert job.val_dataset is not None
    n = len(cast(Sized, job.val_dataset))
    losses = []
    for b in range(min(cfg.val_batches, math.ceil(n / cfg.batch_size))):
        idx = list(range(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size)))
        _seed_everything(_mix(cfg.seed, 991, b))
        batch = job.collate([job.val_dataset[i] for i in idx])
        losses.append(float(job.compute(batch, -1)["loss"]))
    val = torch.tensor(sum(losses) / max(1, len(losses)), device=accelerator.device)
    return float(accelerator.reduce(val, reduction="mean"))


def _tensorboard(run_dir: Path, cfg: LoopConfig) -> Any:
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is an optional extra
        raise ConfigError("--tensorboard needs the tensorboard package", "pip install tensorboard, or drop --tensorboard") from exc
    return SummaryWriter(str(run_dir / "tensorboard"))


# --------------------------------------------------------------------------------------------
# Checkpoints (written, verified and loaded in training/checkpoints.py)


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders a killed run left behind (``.checkpoint-*.part``)."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith((".part", ".old")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default), encoding="utf-8")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(type(o).__name__)


def ensure_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create the run folder, or refuse to reuse one without --resume/--overwrite."""
    if run_dir.exists():
        if resume:
            return
        if not overwrite:
            from ..errors import OutputExistsError

            raise OutputExistsError(f"run folder '{run_dir}' already exists",
                                    "pass --resume to continue it or --overwrite to start over")
        check_replaceable(run_dir)  # --overwrite replaces medm2g's own folders only
        shutil.rmtree(run_dir)
    check_output(run_dir, overwrite=True)  # its parent exists and is writable
    run_dir.mkdir(exist_ok=True)
    write_marker(run_dir)
