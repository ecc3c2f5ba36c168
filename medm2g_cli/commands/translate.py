"""``medm2g translate``: image-to-image translation of volumes (MRI -> CT, T1 -> T2, ...) on the input grid."""

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
    "  medm2g translate mri2ct t1.nii.gz -o sct.nii.gz\n\n"
    "  medm2g translate mri2ct dicom/T1_series/ -o sct_dicom --samples 4 --preview\n\n"
    "  medm2g translate t1-t2 cases/ -o out/ --continue --num-parts 2 --part-id 0 --device cuda:0\n\n"
    "  medm2g translate t1-pd list.txt -o out/ --sampler dpm++ --steps 20\n\n"
    "Directions: mri2ct, ct2mri, and A-B for MRI contrasts A, B in t1, t2, pd, flair, t1ce (and A-ct, ct-A).\n\n"
    "Outputs are written on the input grid with the input affine (NIfTI sform and qform; DICOM as a new "
    "derived series marked SyntheticData YES in the source study). A run report <OUT>_run.json lists "
    "versions, device, weights hash, settings, timings and sha256 of inputs and outputs."
)


@opts.inference_options()
def translate(
    *,
    direction: Annotated[choices.Direction, typer.Argument(parser=choices.parse_direction, help="mri2ct, ct2mri, t1-t2, ... (see below).", show_default=False)],
    inp: Annotated[Path, typer.Argument(metavar="IN", help="A volume (.nii.gz, .mha, .nrrd), a DICOM folder or .zip, a folder of volumes, or a .txt list of paths.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file or DICOM folder (a folder for batch inputs).", show_default=False)],
    samples: opts.Samples = 1,
    preview: opts.Preview = False,
    strict: opts.Strict = False,
    resume: Annotated[bool, typer.Option("--continue", help="Skip cases whose output already exists.")] = False,
    num_parts: Annotated[int, typer.Option("--num-parts", help="Split the cases into N parts (processes, GPUs or machines).")] = 1,
    part_id: Annotated[int, typer.Option("--part-id", help="Which part (0..N-1) this process runs.")] = 0,
    axis: opts.Axis = choices.Axis.axial,
    fmt: opts.OutFormat = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID when a DICOM folder holds several.", show_default=False)] = None,
    settings: InferenceSettings,  # the shared options (opts.inference_options)
    anonymize: Anonymize = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Translate a volume to another modality or MRI contrast, slice by slice, on the input grid."""
    from ..api import translate_path

    task: str = value(direction)
    with opts.progress_bar(f"{task} (slices)", enabled=not json_out) as prog:
        rep = translate_path(task, inp, output, settings=settings, samples=samples, axis=value(axis),
                             preview=preview, resume=resume, num_parts=num_parts, part_id=part_id, overwrite=overwrite,
                             fmt=value(fmt), series=series, log=opts.log, progress=prog, anonymize=anonymize,
                             strict=strict)
    if json_out:
        print_json(rep.to_dict())
        return
    con = console()
    for case in rep.cases:
        plain(f"wrote {', '.join(map(str, case.files))}")
    if rep.skipped:
        con.print(f"skipped {len(rep.skipped)} finished case(s) (--continue)")
    if rep.run_report:
        plain(f"run report: {rep.run_report}")
    con.print("[dim]outputs are synthetic and not for clinical use[/dim]")


def register(app: typer.Typer) -> None:
    """Add ``translate`` to the root app."""
    app.command("translate", epilog=EPILOG)(translate)
