"""``medm2g register``: align MOVING to FIXED (SimpleITK, Mattes MI) and resample it onto FIXED's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import Anonymize, JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g register ct.nii.gz mri.nii.gz -o mri_on_ct.nii.gz\n\n"
    "  medm2g register t1.nii.gz t2.nii.gz -o t2_on_t1.nii.gz --transform affine --save-transform t2_to_t1.tfm\n\n"
    "  medm2g register ct_dicom/ cbct.mha -o cbct_on_ct.nii.gz --transform bspline --json"
)


def register_cmd(
    fixed: Annotated[Path, typer.Argument(help="Fixed image: defines the output grid.", show_default=False)],
    moving: Annotated[Path, typer.Argument(help="Moving image: aligned and resampled.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Resampled moving image (.nii.gz, .mha, .nrrd).", show_default=False)],
    transform: Annotated[str, typer.Option("--transform", help="rigid|affine|bspline (bspline refines a rigid start).")] = "rigid",
    save_transform: Annotated[Path | None, typer.Option("--save-transform", help="Also write the ITK transform (.tfm/.h5).", show_default=False)] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="Optimiser iterations per resolution level.")] = 200,
    series: Annotated[str | None, typer.Option("--series", help="DICOM series of FIXED when its folder holds several.", show_default=False)] = None,
    moving_series: Annotated[str | None, typer.Option("--moving-series", help="DICOM series of MOVING.", show_default=False)] = None,
    anonymize: Anonymize = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Register MOVING to FIXED with Mattes mutual information (multi-resolution); print the final metric."""
    from ..io.tools import register_files

    with console().status(f"registering {moving.name} to {fixed.name} ({transform})"):
        data = register_files(fixed, moving, output, transform=transform, save_transform=save_transform,
                              fixed_series=series, moving_series=moving_series, iterations=iterations,
                              overwrite=overwrite, anonymize=anonymize)
    if json_out:
        print_json(data)
        return
    plain(f"final metric (Mattes MI, lower is better): {data['metric']:.5f} after {data['iterations']} iterations")
    plain(f"wrote {data['output']} on the fixed grid")
    if data["save_transform"]:
        plain(f"wrote transform {data['save_transform']}")


def register(app: typer.Typer) -> None:
    """Add ``medm2g register``."""
    app.command("register", epilog=EPILOG)(register_cmd)
