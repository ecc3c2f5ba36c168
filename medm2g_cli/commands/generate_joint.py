"""``medm2g generate xray+report``: an X-ray and its report generated together from one prompt."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _infer_options as opts
from ._common import (
    Device,
    Eta,
    Guidance,
    JsonOut,
    Overwrite,
    Precision,
    Sampler,
    Seed,
    SkipVerify,
    Steps,
    Weights,
    console,
    plain,
    print_json,
)
from .generate import ImgFormat, Num, Out, Prompt

EPILOG = (
    "Examples:\n\n"
    '  medm2g generate xray+report --prompt "Cardiomegaly. Small left pleural effusion." -n 4 -o pairs/\n\n'
    '  medm2g generate xray+report --prompt "No acute cardiopulmonary process." -o pairs/ --format dicom\n\n'
    "Both are drawn together (each branch attends to the other's latent at every step). Writes "
    "DIR/xray_NNN.png (or .dcm Secondary Capture marked synthetic) with DIR/xray_NNN.txt (its report), "
    "DIR/reports.json, DIR/contact_sheet.png, DIR/generate.json and DIR/run_report.json. The same seed "
    "gives identical images and text."
)


def xray_report(
    prompt: Prompt,
    output: Out,
    num: Num = 1,
    fmt: ImgFormat = "png",
    decoding: Annotated[str, typer.Option("--decoding", help="greedy|beam text decoding of the report.")] = "greedy",
    num_beams: Annotated[int, typer.Option("--num-beams", help="Beams for --decoding beam.")] = 4,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    steps: Steps = None,
    guidance: Guidance = None,
    eta: Eta = None,
    sampler: Sampler = None,
    seed: Seed = 0,
    skip_verify: SkipVerify = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Generate chest X-rays together with their reports from a text prompt."""
    import contextlib

    from ..api import generate_image_report

    st = opts.settings(weights, device, precision, steps, guidance, eta, sampler, seed, None, skip_verify)
    with console().status(f"generating {num} X-ray + report pair(s)") if not json_out else contextlib.nullcontext():
        rep = generate_image_report(prompt, output, settings=st, image="xray", num=num, fmt=fmt, decoding=decoding,
                                    num_beams=num_beams, overwrite=overwrite, log=opts.log)
    if json_out:
        print_json(rep.to_dict())
        return
    for pair in rep.pairs:
        plain(f"{pair.image}: {pair.report}")
    plain(f"wrote {len(rep.pairs)} X-ray + report pair(s), reports.json and generate.json to {output}")
    console().print("[dim]outputs are synthetic and not for clinical use[/dim]")


def register(sub: typer.Typer) -> None:
    """Add ``xray+report`` to the ``generate`` group."""
    sub.command("xray+report", epilog=EPILOG)(xray_report)
