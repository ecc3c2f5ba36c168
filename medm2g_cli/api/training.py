"""Typed Python API of ``medm2g pretrain`` and ``medm2g finetune``.

A run is described by one frozen :class:`TrainConfig`, assembled by :func:`build_config` (defaults or
a fine-tuning task's < a config file < explicit options) and run by :func:`pretrain` or
:func:`finetune`, which return a :class:`RunSummary`. :func:`describe` is ``--print-config``.

Example::

    from medm2g_cli.api.training import build_config, pretrain
    cfg = build_config(Path("examples/pretrain_tiny.yaml"), run_dir=Path("runs/tiny"), train={"steps": 50})
    summary = pretrain(cfg)
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..training.config import LoopConfig, StageOptions, TrainConfig, build_config
from ..training.interfaces import Reporter, RunSummary

__all__ = ["LoopConfig", "Reporter", "RunSummary", "StageOptions", "TrainConfig", "build_config", "describe",
           "finetune", "pretrain"]


def pretrain(config: TrainConfig, *, reporter: Reporter | None = None) -> RunSummary:
    """Run (or, with ``config.resume``, continue) a pre-training run; returns its summary."""
    from ..training import runner

    return runner.run(config, reporter=reporter)


def finetune(config: TrainConfig, *, reporter: Reporter | None = None) -> RunSummary:
    """Run a fine-tuning task (``config.task``, from ``build_config(task=...)``) from ``config.init``."""
    from ..training import runner

    if config.task is None:
        raise ConfigError("the configuration names no fine-tuning task", "build it with build_config(task=...)")
    if config.init is None:
        raise ConfigError("finetune needs --init MODEL", "pass the pre-trained model folder to start from")
    return runner.run(config, reporter=reporter)


def describe(config: TrainConfig) -> dict[str, Any]:
    """The fully resolved configuration (``--print-config``): a JSON-compatible dict that is itself a
    valid config file; the model is built on the ``meta`` device, nothing is read, written or trained."""
    from ..training.print_config import resolved_config

    return resolved_config(config)
