"""Optimiser parameter groups per branch and the batch arithmetic (Table A3).

Table A3 gives each diffusion model its own learning rate (text 5e-5, X-ray 2e-5, CT 1e-6, MRI 1e-6)
and total batch size (1024 / 256 / 128 / 128). Here:

* :func:`param_groups` splits a phase's trainable parameters into one AdamW group per branch
  (``text``, ``xray``, ``ct``, ``mri``: the component's suffix, or the text VAE/encoder for text), each
  with its ``LoopConfig.branch_lr`` value, or ``lr`` when the branch has none. Without ``branch_lr``
  there is one group, exactly the optimiser of earlier versions (``small``/``tiny`` runs unchanged).
* :func:`resolve_batch` turns ``total_batch_size`` into gradient accumulation:
  total = processes x micro-batch x accumulation, refused when it does not divide.
* :func:`preset_defaults` holds the ``full`` preset's Table A3 values, applied to pre-training runs
  of a ``full`` model only where the config leaves them unset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .. import modalities
from ..errors import ConfigError

TABLE_A3_LR: dict[str, float] = {"text": 5e-5, "xray": 2e-5, "ct": 1e-6, "mri": 1e-6}
"""Table A3 learning rates per diffusion model."""
TABLE_A3_TOTAL_BATCH: dict[str, int] = {"text": 1024, "xray": 256, "ct": 128, "mri": 128}
"""Table A3 total batch sizes per diffusion model."""
BRANCH_LR_STAGES: tuple[str, ...] = ("diffusion", "multiflow")
"""Phases whose groups take ``branch_lr``: Table A3 configures the diffusion models; the
autoencoder and alignment phases keep the single ``lr``."""

_TEXT_COMPONENTS = ("text_vae", "text_encoder")


def branch_of(component: str) -> str | None:
    """The branch a component belongs to (``unet_ct`` -> ``ct``, ``text_vae`` -> ``text``), else None."""
    if component in _TEXT_COMPONENTS:
        return "text"
    tail = component.rsplit("_", 1)[-1]
    return tail if tail in modalities.MODALITIES else None


def check_branches(branch_lr: Mapping[str, Any] | None) -> dict[str, float]:
    """``branch_lr`` validated: known branch names, positive numbers."""
    out: dict[str, float] = {}
    for k, v in (branch_lr or {}).items():
        if k not in modalities.MODALITIES:
            raise ConfigError(f"train.branch_lr names an unknown branch '{k}'",
                              f"use some of: {', '.join(modalities.MODALITIES)}")
        try:
            lr = float(v)
        except (TypeError, ValueError):
            lr = -1.0
        if lr <= 0:
            raise ConfigError(f"train.branch_lr.{k} = {v!r} is not a positive learning rate", "e.g. 2e-5")
        out[k] = lr
    return out


def param_groups(job: Any, lr: float, branch_lr: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """AdamW parameter groups of ``job``'s trainable parameters, one per branch (see module docstring).

    Each group carries ``branch`` (a name for logs and ``--print-config``) next to ``params``/``lr``.
    """
    params = job.trainable_parameters()
    rates = check_branches(branch_lr)
    if not rates or getattr(job, "name", None) not in BRANCH_LR_STAGES:
        return [{"params": params, "lr": lr, "branch": "all"}]
    owner: dict[int, str] = {}
    for comp, ps in sorted(getattr(job, "params", {}).items()):
        b = branch_of(comp) or "other"
        for p in ps:
            owner.setdefault(id(p), b)
    groups: dict[str, list[Any]] = {}
    for p in params:  # the job's stable order, so the optimiser state lines up on resume
        groups.setdefault(owner.get(id(p), "other"), []).append(p)
    return [{"params": ps, "lr": rates.get(b, lr), "branch": b} for b, ps in groups.items()]


def resolve_batch(batch_size: int, total: int | None, processes: int, grad_accum: int) -> int:
    """Gradient accumulation steps: ``total / (processes x batch_size)``, or ``grad_accum`` when no total."""
    if total is None:
        return grad_accum
    per_step = processes * batch_size
    if total < 1 or total % per_step:
        raise ConfigError(f"total batch {total} is not a multiple of {processes} process(es) x {batch_size} "
                          f"per micro-batch = {per_step}",
                          "change train.total_batch_size or --batch-size so that it divides")
    return total // per_step


def preset_defaults(branches: Sequence[str]) -> dict[str, Any]:
    """Table A3's ``full`` values for a run training ``branches``: per-branch lrs and the total batch.

    One data loader feeds every branch of a phase, so a run over several branches takes the smallest
    of their total batches (128 once CT or MRI is in).
    """
    present = [b for b in branches if b in TABLE_A3_TOTAL_BATCH] or list(TABLE_A3_TOTAL_BATCH)
    return {"branch_lr": {b: TABLE_A3_LR[b] for b in present},
            "total_batch_size": min(TABLE_A3_TOTAL_BATCH[b] for b in present)}


def resolve_loop(loop: Any, *, preset: str | None, branches: Sequence[str], processes: int,
                 finetune: bool = False) -> Any:
    """``loop`` with the ``full`` defaults filled in (pre-training only: fine-tuning keeps the task's
    supplement-C values) and ``grad_accum`` computed from the total batch."""
    if preset == "full" and not finetune:
        d = preset_defaults(branches)
        if loop.branch_lr is None:
            loop = dataclasses.replace(loop, branch_lr=d["branch_lr"])
        if loop.total_batch_size is None:
            loop = dataclasses.replace(loop, total_batch_size=d["total_batch_size"])
    check_branches(loop.branch_lr)
    accum = resolve_batch(loop.batch_size, loop.total_batch_size, processes, loop.grad_accum)
    return dataclasses.replace(loop, grad_accum=accum)


def batch_report(loop: Any, processes: int) -> dict[str, Any]:
    """The batch arithmetic, as ``--print-config`` and the run config show it."""
    return {"processes": processes, "micro_batch": loop.batch_size, "grad_accum": loop.grad_accum,
            "total_batch": processes * loop.batch_size * loop.grad_accum,
            "total_batch_size_setting": loop.total_batch_size}
