"""``medm2g generate xray|ct|mri``: images from a text prompt (plus the ``generate-xray`` alias)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated

import typer

from .. import choices
from ..choices import value
from ..inference.runtime import InferenceSettings
from . import _infer_options as opts
from ._common import JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    '  medm2g generate xray --prompt "Cardiomegaly. Small left pleural effusion." -n 4 -o cxr/\n\n'
    '  medm2g generate-xray --prompt "No acute cardiopulmonary process." -o cxr/ --format dicom\n\n'
    '  medm2g generate mri --prompt "axial t2 brain, tumour with oedema" -n 2 -o mri/ --sampler dpm++ --steps 20\n\n'
    "Writes DIR/<target>_NNN.png (X-ray 8-bit, CT/MRI 16-bit) or .dcm Secondary Capture marked "
    "synthetic, DIR/contact_sheet.png, DIR/generate.json (prompt, settings, intensity mapping) and "
    "DIR/run_report.json."
)

Size = Annotated[int | None, typer.Option("--size", help="Image side in pixels (default: the model's size).", show_default=False)]


def _make(target: str) -> Callable[..., None]:
    @opts.inference_options(schedule=False, compile_=False)
    def command(
        *,
        prompt: opts.Prompt,
        output: opts.OutDir,
        num: opts.Num = 1,
        fmt: opts.ImgFormat = choices.ImageFormat.png,
        size: Size = None,
        settings: InferenceSettings,  # the shared options (opts.inference_options)
        overwrite: Overwrite = False,
        json_out: JsonOut = False,
    ) -> None:
        from ..api import generate_images

        with console().status(f"generating {num} {target} image(s)") if not json_out else contextlib.nullcontext():
            rep = generate_images(target, prompt, output, settings=settings, num=num, fmt=value(fmt), size=size,
                                  overwrite=overwrite, log=opts.log)
        if json_out:
            print_json(rep.to_dict())
            return
        plain(f"wrote {len(rep.files)} image(s), contact_sheet.png and generate.json to {output}")
        console().print("[dim]outputs are synthetic and not for clinical use[/dim]")

    command.__doc__ = f"Generate {target} images from a text prompt."
    return command


def register(app: typer.Typer) -> None:
    """Add ``generate xray|ct|mri``, ``generate xray+report`` and the top-level alias ``generate-xray``."""
    from ..modalities import IMAGE_MODALITIES
    from .generate_joint import EPILOG as JOINT_EPILOG
    from .generate_joint import xray_report

    sub = typer.Typer(help="Generate images (xray, ct, mri) from a text prompt.", epilog=EPILOG, no_args_is_help=True)
    for target in IMAGE_MODALITIES:
        sub.command(target, epilog=EPILOG)(_make(target))
    sub.command("xray+report", epilog=JOINT_EPILOG)(xray_report)
    app.add_typer(sub, name="generate")
    app.command("generate-xray", epilog=EPILOG, help="Alias of `medm2g generate xray`.")(_make("xray"))
