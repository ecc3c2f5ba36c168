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
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import ConfigError
from . import optim as optim_mod
from .checkpoints import load_checkpoint, save_checkpoint
from .config import LoopConfig
from .ema import EMA
from .interfaces import NullReporter, PhaseResult, Reporter, TrainJob
from .run_folder import METRICS_FILE

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


# --------------------------------------------------------------------------------------------
# One phase, in named steps


@dataclass
class _Phase:
    """The objects a phase trains with, built by :func:`_setup` and read by the step functions."""

    job: TrainJob
    cfg: LoopConfig
    accelerator: Any
    run_dir: Path
    global_offset: int
    params: list[torch.nn.Parameter]
    optimizer: Any
    schedulers: list[Any]  # the lr schedule, then the plateau decay when there is one
    ema: EMA | None
    sampler: StepBatchSampler
    tb: Any
    result: PhaseResult
    seen: int = 0  # samples over all processes
    acc_terms: dict[str, float] = field(default_factory=dict)  # loss terms summed over the micro-steps

    @property
    def plateau(self) -> Any:
        return self.schedulers[1] if len(self.schedulers) > 1 else None


def _trainable(job: TrainJob, cfg: LoopConfig, accelerator: Any) -> list[torch.nn.Parameter]:
    """Move the model to the device and leave exactly the job's parameters trainable."""
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
    return params


def _optimizer(job: TrainJob, cfg: LoopConfig, accelerator: Any) -> tuple[Any, list[Any]]:
    """AdamW over the job's parameter groups, its lr schedule and (``plateau_factor``) plateau decay."""
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
    return optimizer, [scheduler] + ([plateau] if plateau is not None else [])


def _setup(job: TrainJob, cfg: LoopConfig, accelerator: Any, run_dir: Path, global_offset: int,
           resume_from: Path | None) -> _Phase:
    """Everything a phase needs, restored from ``resume_from`` when given; returns the phase state."""
    params = _trainable(job, cfg, accelerator)
    optimizer, schedulers = _optimizer(job, cfg, accelerator)
    ema = EMA(params, cfg.ema_decay) if cfg.ema else None
    start = 0
    if resume_from is not None:
        start = load_checkpoint(resume_from, accelerator, job.module, ema, job.name, schedulers)
    sampler = StepBatchSampler(
        len(cast(Sized, job.dataset)), cfg.batch_size, seed=_mix(cfg.seed, global_offset), start_step=start,
        total_steps=cfg.steps, grad_accum=cfg.grad_accum, rank=accelerator.process_index,
        world=accelerator.num_processes,
    )
    tb = _tensorboard(run_dir, cfg) if accelerator.is_main_process else None
    return _Phase(job, cfg, accelerator, run_dir, global_offset, params, optimizer, schedulers, ema, sampler, tb,
                  PhaseResult(job.name, cfg.steps, start))


def _train_mode(job: TrainJob) -> None:
    set_mode = getattr(job, "set_train_mode", None)
    if set_mode is not None:
        set_mode()  # trainable components in train mode, frozen ones in eval (no dropout noise)
    else:
        job.module.train()


def _micro_step(ph: _Phase, batch: Any, step: int, micro: int) -> None:
    """Forward, backward and (at a synchronising micro-step) the optimizer step of one micro-batch."""
    acc, cfg, world = ph.accelerator, ph.cfg, ph.accelerator.num_processes
    # Every random draw of this micro-step is a function of (seed, step, micro, rank).
    _seed_everything(_mix(cfg.seed, ph.global_offset + step, micro, acc.process_index))
    if micro == 0:
        ph.job.before_step(step)
    with acc.accumulate(ph.job.module), acc.autocast():
        terms = ph.job.compute(batch, step)
        acc.backward(terms["loss"])
        if acc.sync_gradients:
            if world > 1:
                _all_reduce_grads(ph.params, acc)
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(ph.params, cfg.max_grad_norm)
        ph.optimizer.step()
        if acc.sync_gradients:
            ph.schedulers[0].step()
        ph.optimizer.zero_grad(set_to_none=True)
    for k, v in terms.items():
        ph.acc_terms[k] = ph.acc_terms.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
    ph.seen += cfg.batch_size * world


def _step_record(ph: _Phase, step: int, t0: float) -> dict[str, Any]:
    """The metrics line of a finished optimizer step (loss terms averaged over processes)."""
    record = _reduce_terms(ph.acc_terms, ph.accelerator)
    ph.acc_terms = {}
    if not ph.result.first:
        ph.result.first = dict(record)
    ph.result.final = dict(record)
    elapsed = time.perf_counter() - t0
    groups = ph.optimizer.param_groups
    return {
        "phase": ph.job.name, "step": step, "global_step": ph.global_offset + step,
        **{f"loss/{k}" if k != "loss" else "loss": v for k, v in record.items()},
        "lr": groups[0]["lr"], "samples_per_s": ph.seen / max(elapsed, 1e-9),
        **({f"lr/{g.get('branch', i)}": g["lr"] for i, g in enumerate(groups)} if len(groups) > 1 else {}),
        "epoch": ph.sampler.epoch_of(step), "time": time.time(),
    }


def _log(ph: _Phase, rec: dict[str, Any], step: int, end: int) -> None:
    """Append ``rec`` to RUN/metrics.jsonl (and tensorboard) on the main process."""
    if ph.accelerator.is_main_process and (step % ph.cfg.log_every == 0 or step == end):
        with open(ph.run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        if ph.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k not in ("time",):
                    ph.tb.add_scalar(k, v, ph.global_offset + step)


def _maybe_checkpoint(ph: _Phase, step: int, checkpoint_at_end: bool, extra_state: dict[str, Any] | None) -> None:
    cfg = ph.cfg
    periodic = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps
    # The end of a phase that another phase follows is checkpointed too, so a run killed early
    # in the next phase does not redo this one.
    if periodic or (checkpoint_at_end and cfg.checkpoint_every and step == cfg.steps):
        save_checkpoint(ph.run_dir, ph.global_offset + step, ph.job, ph.accelerator, ph.ema,
                        {"phase": ph.job.name, "phase_step": step, **(extra_state or {})}, cfg.keep_checkpoints,
                        ph.schedulers)


def _finish(ph: _Phase, step: int, t0: float, reporter: Reporter) -> PhaseResult:
    """Close the phase: result numbers, EMA weights into the model, accelerate emptied for the next one."""
    result = ph.result
    result.seconds = time.perf_counter() - t0
    result.samples_per_s = ph.seen / max(result.seconds, 1e-9)
    result.steps = step
    reporter.stop()
    if ph.tb is not None:
        ph.tb.close()
    if ph.ema is not None:
        # The rest of the run (next phase, final model) continues from the averaged weights.
        ph.ema.copy_to_params()
    ph.accelerator.wait_for_everyone()
    # The next phase prepares its own optimizer/scheduler; accelerate's save_state/load_state
    # expect exactly the objects of the current phase.
    ph.accelerator._optimizers.clear()
    ph.accelerator._schedulers.clear()
    ph.accelerator._custom_objects.clear()
    return result


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
    ph = _setup(job, cfg, accelerator, run_dir, global_offset, resume_from)
    start = ph.result.start_step
    loader = DataLoader(job.dataset, batch_sampler=ph.sampler, collate_fn=job.collate, num_workers=cfg.workers,
                        persistent_workers=False)
    reporter.start(job.name, cfg.steps, start)
    _train_mode(job)
    t0 = time.perf_counter()
    step, micro = start, 0
    last_epoch = int(ph.sampler.epoch_of(start))
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    batches = iter(loader)
    while step < end:
        _micro_step(ph, next(batches), step, micro)
        micro += 1
        if micro < cfg.grad_accum:
            continue
        micro = 0
        if ph.ema is not None:
            ph.ema.update(step)
        step += 1
        rec = _step_record(ph, step, t0)
        epoch_now = int(ph.sampler.epoch_of(step))
        if ph.plateau is not None and epoch_now > last_epoch and job.val_dataset is not None:
            rec["val_loss"] = val = _validate(job, cfg, accelerator)
            ph.plateau.step(val)
        last_epoch = epoch_now
        _log(ph, rec, step, end)
        reporter.update(rec)
        _maybe_checkpoint(ph, step, checkpoint_at_end, extra_state)
    return _finish(ph, step, t0, reporter)


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
