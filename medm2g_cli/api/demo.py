"""``demo``: the whole toolkit on held-out phantom subjects with the demo weights (:mod:`medm2g_cli.demo`).

Not re-exported by :mod:`medm2g_cli.api` (the demo itself runs the API's entry points); import it
as ``from medm2g_cli.api.demo import run_demo``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoResult:
    """The demo's metrics (as written to ``out/metrics.json``) and where its pages are."""

    metrics: dict[str, Any]
    out: Path

    @property
    def passed(self) -> bool:
        """Every check beat its baseline."""
        return bool(self.metrics["passed"])

    @property
    def index(self) -> Path:
        """The demo's HTML page."""
        return self.out / "index.html"

    def to_dict(self) -> dict[str, Any]:
        """The metrics (what ``--json`` prints)."""
        return self.metrics


def run_demo(*, out: Path, weights: Path | None = None, brain_subjects: int = 3, chest_studies: int = 30,
             images_per_finding: int = 8, samples: int = 2, steps: int | None = None, seed: int | None = None,
             device: str = "auto", overwrite: bool = False, step: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Translate, synthesize, generate, report and evaluate on phantom subjects the model never saw,
    into ``out`` (atomically); ``steps``/``seed`` None keep the demo's defaults. ``step`` is told each stage."""
    from ..demo import DemoSettings
    from ..demo import run_demo as run

    settings = DemoSettings(out=out, weights=weights, brain_subjects=brain_subjects, chest_studies=chest_studies,
                            images_per_finding=images_per_finding, samples=samples, device=device,
                            overwrite=overwrite)
    if seed is not None:
        settings.seed = seed
    if steps is not None:
        settings.steps = steps
    return DemoResult(run(settings, step), out)
