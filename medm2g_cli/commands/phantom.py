"""`medm2g phantom`: generate the built-in digital phantom cohorts (brain MRI/CT, chest X-ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOut, Overwrite, console, print_json

phantom_app = typer.Typer(
    name="phantom",
    help=(
        "Generate a paired, ground-truth phantom cohort offline (brain MRI/CT or chest X-ray) in the layout "
        "of a real dataset.\n\n"
        "Examples:\n\n"
        "  medm2g phantom brain -o ixi --subjects 40 --layout ixi\n\n"
        "  medm2g phantom brain -o brats --subjects 55 --layout brats --resolution 1\n\n"
        "  medm2g phantom chest -o iu_xray --n 200 --layout iu-xray"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; must not exist unless --overwrite).")]
PSeed = Annotated[int, typer.Option("--seed", help="Cohort seed; the same seed gives byte-identical files.")]


def _progress(label: str):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console(), transient=True)


@phantom_app.command("brain")
def brain(
    out: Out,
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Number of subjects.")] = 10,
    seed: PSeed = 0,
    resolution: Annotated[int, typer.Option("--resolution", help="Voxel size in mm: 1 or 2.")] = 2,
    layout: Annotated[str, typer.Option("--layout", help="ixi (T1/T2/PD), brats (t1/t1ce/t2/flair/seg) or plain (all).")] = "plain",
    tumour_rate: Annotated[
        float | None,
        typer.Option("--tumour-rate", help="Probability of a tumour per subject (default: ixi 0, brats 1, plain 0.5).",
                     show_default=False),
    ] = None,
    randomise: Annotated[
        int,
        typer.Option("--randomise", help="Also write N domain-randomised renderings of each subject (contrast, bias, "
                     "noise, slice thickness, field of view, orientation; CT unchanged) as sub-NNN-rKK (--layout plain).",
                     min=0),
    ] = 0,
    randomise_keep: Annotated[
        str,
        typer.Option("--randomise-keep", help="Comma list of MRI contrasts copied unrandomised into the renderings "
                     "(a synthesis target such as pd; the CT always is).", show_default=False),
    ] = "",
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Brain phantoms: MNI152 anatomy, T1/T2/PD/FLAIR/T1ce MRI, CT in HU, label map and text finding.

    Examples:

      medm2g phantom brain -o brain --subjects 4

      medm2g phantom brain -o ixi --subjects 40 --layout ixi --seed 1

      medm2g phantom brain -o train --subjects 8 --randomise 4 --randomise-keep pd
    """
    from ..data.phantom import RandomiseConfig, write_brain_cohort

    keep = tuple(k.strip().lower() for k in randomise_keep.split(",") if k.strip())
    config = RandomiseConfig.keeping(keep) if keep else None
    with _progress("brain phantoms") as bar:
        task = bar.add_task("", total=subjects)
        summary = write_brain_cohort(out, subjects, seed=seed, resolution=resolution, layout=layout,
                                     tumour_rate=tumour_rate, overwrite=overwrite,
                                     progress=lambda i, n: bar.update(task, completed=i), randomise=randomise,
                                     randomise_config=config)
    if json_out:
        print_json(summary)
        return
    n_t = sum(s["tumour"] for s in summary["subjects"][:: randomise + 1])
    extra = f" and {summary['n'] * randomise} randomised renderings" if randomise else ""
    console().print(f"wrote {summary['n']} subjects ({n_t} with tumour, {resolution} mm, layout {layout}){extra} to {out}")


@phantom_app.command("chest")
def chest(
    out: Out,
    n: Annotated[int, typer.Option("--n", help="Number of two-view studies.")] = 20,
    seed: PSeed = 0,
    size: Annotated[int, typer.Option("--size", help="Image size in pixels: 256 or 512.")] = 256,
    layout: Annotated[str, typer.Option("--layout", help="iu-xray (R2Gen annotation.json + images/) or plain.")] = "iu-xray",
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Chest X-ray phantoms with findings (cardiomegaly, effusion, pneumothorax, consolidation, nodule), reports and labels.csv.

    Examples:

      medm2g phantom chest -o iu_xray --n 100

      medm2g phantom chest -o cxr --n 20 --size 512 --layout plain
    """
    from ..data.phantom import write_chest_cohort

    with _progress("chest phantoms") as bar:
        task = bar.add_task("", total=n)
        summary = write_chest_cohort(out, n, seed=seed, size=size, layout=layout, overwrite=overwrite,
                                     progress=lambda i, k: bar.update(task, completed=i))
    if json_out:
        print_json(summary)
        return
    counts = ", ".join(f"{k} {v}" for k, v in summary["finding_counts"].items())
    console().print(f"wrote {n} studies ({counts}) to {out}")


def register(app: typer.Typer) -> None:
    """Attach the `phantom` sub-app to the root app."""
    app.add_typer(phantom_app, name="phantom")
