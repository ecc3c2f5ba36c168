"""``medm2g generate xray|ct|mri``: images from a text prompt (plus the ``generate-xray`` alias)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _infer_options as opts
from ._common import (
    BatchSize,
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

EPILOG = (
    "Examples:\n\n"
    '  medm2g generate xray --prompt "Cardiomegaly. Small left pleural effusion." -n 4 -o cxr/\n\n'
    '  medm2g generate-xray --prompt "No acute cardiopulmonary process." -o cxr/ --format dicom\n\n'
    '  medm2g generate mri --prompt "axial t2 brain, tumour with oedema" -n 2 -o mri/ --sampler dpm++ --steps 20\n\n'
    "Writes DIR/<target>_NNN.png (X-ray 8-bit, CT/MRI 16-bit) or .dcm Secondary Capture marked "
    "synthetic, DIR/contact_sheet.png, DIR/generate.json (prompt, settings, intensity mapping) and "
    "DIR/run_report.json."
)

Prompt = Annotated[str, typer.Option("--prompt", "-p", help="Findings text to generate from.", show_default=False)]
Num = Annotated[int, typer.Option("--num", "-n", help="Number of images.")]
Out = Annotated[Path, typer.Option("--output", "-o", help="Output folder (created; must not exist without --overwrite).", show_default=False)]
ImgFormat = Annotated[str, typer.Option("--format", "-f", help="png|dicom (DICOM Secondary Capture, marked synthetic).")]
Size = Annotated[int | None, typer.Option("--size", help="Image side in pixels (default: the model's size).", show_default=False)]


def _run(target: str, prompt: str, num: int, output: Path, fmt: str, size: int | None, weights: Path | None,
         device: str, precision: str, steps: int | None, guidance: float | None, eta: float | None, sampler: str | None,
         seed: int, batch_size: int | None, skip_verify: bool, overwrite: bool, json_out: bool) -> None:
    from ..api import generate_images

    st = opts.settings(weights, device, precision, steps, guidance, eta, sampler, seed, batch_size, skip_verify)
    with console().status(f"generating {num} {target} image(s)") if not json_out else _null():
        rep = generate_images(target, prompt, output, settings=st, num=num, fmt=fmt, size=size, overwrite=overwrite,
                              log=opts.log)
    if json_out:
        print_json(rep.to_dict())
        return
    con = console()
    plain(f"wrote {len(rep.files)} image(s), contact_sheet.png and generate.json to {output}")
    con.print("[dim]outputs are synthetic and not for clinical use[/dim]")


def _null():  # noqa: ANN202 - a no-op context manager
    import contextlib

    return contextlib.nullcontext()


def _make(target: str):  # noqa: ANN202 - returns a Typer command function
    def command(
        prompt: Prompt,
        output: Out,
        num: Num = 1,
        fmt: ImgFormat = "png",
        size: Size = None,
        weights: Weights = None,
        device: Device = "auto",
        precision: Precision = "fp32",
        steps: Steps = None,
        guidance: Guidance = None,
        eta: Eta = None,
        sampler: Sampler = None,
        seed: Seed = 0,
        batch_size: BatchSize = None,
        skip_verify: SkipVerify = False,
        overwrite: Overwrite = False,
        json_out: JsonOut = False,
    ) -> None:
        _run(target, prompt, num, output, fmt, size, weights, device, precision, steps, guidance, eta, sampler,
             seed, batch_size, skip_verify, overwrite, json_out)

    command.__doc__ = f"Generate {target} images from a text prompt."
    return command


def register(app: typer.Typer) -> None:
    """Add ``generate xray|ct|mri`` and the top-level alias ``generate-xray``."""
    sub = typer.Typer(help="Generate images (xray, ct, mri) from a text prompt.", epilog=EPILOG, no_args_is_help=True)
    from ..modalities import IMAGE_MODALITIES

    for target in IMAGE_MODALITIES:
        sub.command(target, epilog=EPILOG)(_make(target))
    from . import generate_joint

    generate_joint.register(sub)
    app.add_typer(sub, name="generate")
    app.command("generate-xray", epilog=EPILOG, help="Alias of `medm2g generate xray`.")(_make("xray"))
