"""Helpers shared by the inference commands (generate, report, translate, synthesize)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import console, plain

Samples = Annotated[int, typer.Option("--samples", "-k", help="Draw K samples; write their mean and a per-voxel std map (<OUT>_std).")]
Preview = Annotated[bool, typer.Option("--preview", help="Also write a PNG montage (input | output | uncertainty), <OUT>_preview.png.")]
Axis = Annotated[str, typer.Option("--axis", help="Slicing axis: axial|coronal|sagittal.")]
Strict = Annotated[bool, typer.Option("--strict", help="Refuse an input outside the model's domain (applicability warn: contrast, body region, field of view, resolution) with exit 2, before any sampling.")]
OutFormat = Annotated[str | None, typer.Option("--format", "-f", help="nifti|dicom|mha|nrrd (default: from OUT's suffix; no suffix = DICOM series folder).", show_default=False)]


def settings(weights: Path | None, device: str, precision: str, steps: int | None, guidance: float | None,
             eta: float | None, sampler: str | None, seed: int, batch_size: int | None, skip_verify: bool = False,
             compile_: bool = False, guidance_stop: float | None = None, spacing: str | None = None) -> Any:
    """The API's InferenceSettings from the common options (None = not given on the command line)."""
    from ..inference.runtime import InferenceSettings

    return InferenceSettings(weights=weights, device=device, precision=precision, steps=steps, guidance=guidance,
                             eta=eta, sampler=sampler, seed=seed, batch_size=batch_size, verify=not skip_verify,
                             compile=compile_, guidance_stop=guidance_stop, spacing=spacing)


def log(message: str) -> None:
    """Print a status or warning line on stderr (warnings in yellow)."""
    plain(message, style="yellow" if message.startswith("warning") else None)


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console(), transient=True) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update
