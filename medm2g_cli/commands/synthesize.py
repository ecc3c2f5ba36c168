"""``medm2g synthesize``: multi-contrast MRI synthesis with composable conditioning (e.g. T1 + T2 -> PD)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import choices
from ..choices import value
from ..inference.runtime import InferenceSettings
from . import _infer_options as opts
from ._common import Anonymize, JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g synthesize --input t1=T1.nii.gz --input t2=T2.nii.gz --target pd -o PD.nii.gz\n\n"
    "  medm2g synthesize -i t1:0.7=T1.nii.gz -i t2:0.3=T2.nii.gz --target flair -o FLAIR.nii.gz --samples 4\n\n"
    "  medm2g synthesize -i t1=T1.nii.gz -i t2=T2_other_grid.nii.gz --target pd -o PD.nii.gz --register\n\n"
    "Each input is NAME=PATH or NAME:WEIGHT=PATH (weights are mixed as composable conditions; default "
    "equal). The output lies on the grid of the first input; inputs on another grid are registered to "
    "it with --register (rigid, Mattes mutual information) and refused without it."
)


@opts.inference_options()
def synthesize(
    *,
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="NAME=PATH or NAME:WEIGHT=PATH (t1, t2, pd, flair, t1ce, ct); repeat.", show_default=False)],
    target: Annotated[str, typer.Option("--target", "-t", help="Contrast to synthesise (e.g. pd).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file or DICOM folder.", show_default=False)],
    register_inputs: Annotated[bool, typer.Option("--register", help="Register inputs on other grids to the first input.")] = False,
    samples: opts.Samples = 1,
    preview: opts.Preview = False,
    strict: opts.Strict = False,
    axis: opts.Axis = choices.Axis.axial,
    fmt: opts.OutFormat = None,
    settings: InferenceSettings,  # the shared options (opts.inference_options)
    anonymize: Anonymize = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Synthesise an MRI contrast from several co-registered inputs (composable conditioning)."""
    from ..api import parse_input_spec
    from ..api import synthesize as run

    specs = [parse_input_spec(s) for s in inputs]
    with opts.progress_bar(f"{'+'.join(n for n, _, _ in specs)} -> {target}", enabled=not json_out) as prog:
        rep = run(specs, target, output, settings=settings, register=register_inputs, samples=samples,
                  axis=value(axis), preview=preview, overwrite=overwrite, fmt=value(fmt), log=opts.log, progress=prog,
                  anonymize=anonymize, strict=strict)
    if json_out:
        print_json(rep.to_dict())
        return
    con = console()
    plain(f"wrote {', '.join(map(str, rep.case.files))}")
    plain(f"run report: {rep.run_report}")
    con.print("[dim]outputs are synthetic and not for clinical use[/dim]")


def register(app: typer.Typer) -> None:
    """Add ``synthesize`` to the root app."""
    app.command("synthesize", epilog=EPILOG)(synthesize)
