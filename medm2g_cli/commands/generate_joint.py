"""``medm2g generate xray+report``: an X-ray and its report generated together from one prompt
(registered in the ``generate`` group by :mod:`.generate`)."""

from __future__ import annotations

import contextlib

from .. import choices
from ..choices import value
from ..inference.runtime import InferenceSettings
from . import _infer_options as opts
from ._common import JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    '  medm2g generate xray+report --prompt "Cardiomegaly. Small left pleural effusion." -n 4 -o pairs/\n\n'
    '  medm2g generate xray+report --prompt "No acute cardiopulmonary process." -o pairs/ --format dicom\n\n'
    "Both are drawn together (each branch attends to the other's latent at every step). Writes "
    "DIR/xray_NNN.png (or .dcm Secondary Capture marked synthetic) with DIR/xray_NNN.txt (its report), "
    "DIR/reports.json, DIR/contact_sheet.png, DIR/generate.json and DIR/run_report.json. The same seed "
    "gives identical images and text."
)


@opts.inference_options(schedule=False, batch_size=False, compile_=False)
def xray_report(
    *,
    prompt: opts.Prompt,
    output: opts.OutDir,
    num: opts.Num = 1,
    fmt: opts.ImgFormat = choices.ImageFormat.png,
    decoding: opts.Decoding = choices.Decoding.greedy,
    num_beams: opts.NumBeams = 4,
    settings: InferenceSettings,  # the shared options (opts.inference_options)
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Generate chest X-rays together with their reports from a text prompt."""
    from ..api import generate_image_report

    with console().status(f"generating {num} X-ray + report pair(s)") if not json_out else contextlib.nullcontext():
        rep = generate_image_report(prompt, output, settings=settings, image="xray", num=num, fmt=value(fmt),
                                    decoding=value(decoding), num_beams=num_beams, overwrite=overwrite, log=opts.log)
    if json_out:
        print_json(rep.to_dict())
        return
    for pair in rep.pairs:
        plain(f"{pair.image}: {pair.report}")
    plain(f"wrote {len(rep.pairs)} X-ray + report pair(s), reports.json and generate.json to {output}")
    console().print("[dim]outputs are synthetic and not for clinical use[/dim]")
