"""``medm2g report``: radiology report text from chest X-rays (PNG, JPEG or DICOM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import choices
from ..choices import value
from ..inference.runtime import InferenceSettings
from . import _infer_options as opts
from ._common import JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g report cxr.png\n\n"
    "  medm2g report study/*.dcm --decoding beam --num-beams 4 --json > reports.json\n\n"
    "  medm2g report cxr1.png cxr2.jpg -o reports.json   (also writes reports_run.json)\n\n"
    "  medm2g report cxr.dcm -o report.dcm   (a Comprehensive SR in the X-ray's study)\n\n"
    "The report is generated text: synthetic, not a diagnosis."
)


@opts.inference_options(schedule=False, batch_size=False, compile_=False)
def report(
    *,
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Chest X-ray files (PNG, JPEG, DICOM).", show_default=False)],
    decoding: opts.Decoding = choices.Decoding.greedy,
    num_beams: opts.NumBeams = 4,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the reports to this file: JSON, or a DICOM SR for one image when it ends in .dcm (run report beside it).", show_default=False)] = None,
    overwrite: Overwrite = False,
    strict: opts.Strict = False,
    settings: InferenceSettings,  # the shared options (opts.inference_options)
    json_out: JsonOut = False,
) -> None:
    """Generate the report text of each chest X-ray."""
    from ..api import report_images

    res = report_images(images, settings=settings, decoding=value(decoding), num_beams=num_beams, out=output,
                        overwrite=overwrite, log=opts.log, strict=strict)
    if json_out:
        print_json({"reports": [r.as_dict() for r in res.reports], "decoding": res.decoding, "num_beams": num_beams,
                    "settings": settings.as_dict(), "synthetic": True})
        return
    con = console()
    for r in res.reports:
        plain(r.image, style="bold")
        typer.echo(r.report)
    con.print("[dim]generated text: synthetic, not a diagnosis[/dim]")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the root app."""
    app.command("report", epilog=EPILOG)(report)
