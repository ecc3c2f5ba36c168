"""What the loop, the runner and the API exchange: the job a phase trains, the progress sink, and the
results of a phase and of a run. Torch-free at import time (the API re-exports these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset


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


@dataclass
class RunSummary:
    """What a finished run reports: its folders, one :class:`PhaseResult` dict per phase, the run config."""

    run_dir: str
    model_dir: str
    phases: list[dict[str, Any]]
    config: dict[str, Any]
    resumed_from: str | None = None
