"""Options shared by the inference commands (translate, synthesize, generate, report, dicom-node),
declared once, and the keyword-only builder of the API's :class:`InferenceSettings` from them.

A command declares ``settings: InferenceSettings`` and is wrapped with :func:`inference_options`:
the wrapper shows Typer the shared model and sampler options in place of ``settings`` and calls
the command with the settings they make.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import choices
from ..choices import value
from ._common import (
    BatchSize,
    Compile,
    Device,
    Eta,
    Guidance,
    GuidanceStop,
    Precision,
    Sampler,
    Seed,
    SkipVerify,
    Spacing,
    Steps,
    Weights,
    console,
    plain,
)

if TYPE_CHECKING:
    from ..inference.runtime import InferenceSettings

Samples = Annotated[int, typer.Option("--samples", "-k", help="Draw K samples; write their mean and a per-voxel std map (<OUT>_std).")]
Preview = Annotated[bool, typer.Option("--preview", help="Also write a PNG montage (input | output | uncertainty), <OUT>_preview.png.")]
Axis = Annotated[choices.Axis, typer.Option("--axis", parser=choices.parse_axis, help="Slicing axis: axial|coronal|sagittal.")]
Strict = Annotated[bool, typer.Option("--strict", help="Refuse an input outside the model's domain (applicability warn: contrast, body region, field of view, resolution) with exit 2, before any sampling.")]
OutFormat = Annotated[choices.OutputFormat | None, typer.Option("--format", "-f", parser=choices.parse_output_format, help="nifti|dicom|mha|nrrd (default: from OUT's suffix; no suffix = DICOM series folder).", show_default=False)]
Decoding = Annotated[choices.Decoding, typer.Option("--decoding", parser=choices.parse_decoding, help="greedy|beam text decoding.")]
NumBeams = Annotated[int, typer.Option("--num-beams", help="Beams for --decoding beam.")]
# generate and generate xray+report
Prompt = Annotated[str, typer.Option("--prompt", "-p", help="Findings text to generate from.", show_default=False)]
Num = Annotated[int, typer.Option("--num", "-n", help="Number of images.")]
OutDir = Annotated[Path, typer.Option("--output", "-o", help="Output folder (created; must not exist without --overwrite).", show_default=False)]
ImgFormat = Annotated[choices.ImageFormat, typer.Option("--format", "-f", parser=choices.parse_image_format, help="png|dicom (DICOM Secondary Capture, marked synthetic).")]


def settings(*, weights: Path | None = None, device: Any = "auto", precision: Any = "auto", steps: int | None = None,
             guidance: float | None = None, eta: float | None = None, sampler: Any = None,
             guidance_stop: float | None = None, spacing: Any = None, seed: int = 0, batch_size: int | None = None,
             skip_verify: bool = False, compile_: bool = False) -> InferenceSettings:
    """The API's InferenceSettings from the common options (None = not given on the command line;
    choice options as Enum members or their values)."""
    from ..inference.runtime import InferenceSettings

    return InferenceSettings(weights=weights, device=value(device), precision=value(precision), steps=steps,
                             guidance=guidance, eta=eta, sampler=value(sampler), seed=seed, batch_size=batch_size,
                             verify=not skip_verify, compile=compile_, guidance_stop=guidance_stop,
                             spacing=value(spacing))


# The shared options in --help order: name -> (annotated type, default).
SHARED: dict[str, tuple[Any, Any]] = {
    "weights": (Weights, None),
    "device": (Device, "auto"),
    "precision": (Precision, "auto"),
    "steps": (Steps, None),
    "guidance": (Guidance, None),
    "eta": (Eta, None),
    "sampler": (Sampler, None),
    "guidance_stop": (GuidanceStop, None),
    "spacing": (Spacing, None),
    "seed": (Seed, 0),
    "batch_size": (BatchSize, None),
    "skip_verify": (SkipVerify, False),
    "compile_": (Compile, False),
}
SCHEDULE = ("guidance_stop", "spacing")
"""The sampler-schedule options; the image generators (generate, report) do not take them."""


def inference_options(*, schedule: bool = True, batch_size: bool = True,
                      compile_: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options (``schedule``: --guidance-stop and --spacing; ``batch_size``:
    --batch-size; ``compile_``: --compile) in place of its ``settings`` parameter."""
    names = [n for n in SHARED if (schedule or n not in SCHEDULE) and (batch_size or n != "batch_size")
             and (compile_ or n != "compile_")]

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        at = [p.name for p in own].index("settings")
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=SHARED[n][0], default=SHARED[n][1])
                  for n in names]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        params = params[:at] + shared + params[at + 1:]

        def command(**kwargs: Any) -> None:
            given = {n: kwargs.pop(n) for n in names}
            fn(**kwargs, settings=settings(**given))

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        command.__module__ = fn.__module__
        return command

    return wrap


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
