"""`medm2g prepare`: turn a downloaded public dataset (or a phantom cohort) into the prepared format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOut, Overwrite, cell, console, plain, print_json


def prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset name (see the list above).", show_default=False)],
    src: Annotated[Path, typer.Argument(help="The dataset folder as distributed.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Prepared folder (a rerun resumes an unfinished one).")],
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
    size: Annotated[int, typer.Option("--size", help="Slice size in pixels (square).")] = 256,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N subjects/studies (splits scale down).",
                                              show_default=False)] = None,
    slices: Annotated[int | None, typer.Option("--slices", help="Slices per subject for volume datasets (default: the paper's).",
                                               show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of seeded splits and of registration sampling (recorded in dataset.json).")] = 0,
    option: Annotated[list[str] | None, typer.Option("--option", help="Adapter option KEY=VALUE (repeatable), "
                                                     "e.g. official_split=true for chestxray14.", show_default=False)] = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Prepare DATASET from folder SRC into OUT: dataset.json, samples.jsonl and 16-bit PNG slices.

    Examples:

      medm2g prepare ixi ~/data/IXI -o prepared/ixi --workers 2

      medm2g prepare iu-xray ~/data/iu_xray -o prepared/iu --size 256

      medm2g phantom brain -o raw --subjects 8 --layout plain && medm2g prepare phantom raw -o prepared/brain
    """
    from ..data.adapters import get_adapter
    from ..data.adapters.base import PrepareOptions, run_prepare
    from ..errors import ConfigError

    if workers < 1 or size < 8 or (limit is not None and limit < 1):
        raise ConfigError("--workers and --limit must be at least 1 and --size at least 8", "fix the option values")
    extra: dict[str, str] = {}
    for o in option or []:
        if "=" not in o:
            raise ConfigError(f"--option '{o}' is not KEY=VALUE", "e.g. --option official_split=true")
        k, v = o.split("=", 1)
        extra[k.strip()] = v.strip()
    adapter = get_adapter(dataset)
    opts = PrepareOptions(size=size, workers=workers, limit=limit, overwrite=overwrite, seed=seed, slices=slices, extra=extra)
    con = console()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(f"[bold]prepare {adapter.NAME}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=con, transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        result = run_prepare(adapter, src, out, opts, progress)
    info = result.info
    if json_out:
        print_json({"out": str(result.out), "name": info.get("name"), "samples": info["sample_counts"],
                    "subjects": info["subject_counts"], "done": result.done, "resumed": result.resumed,
                    "failed": result.failed, "skipped": result.skipped, "split_rule": info.get("split_rule"),
                    "split_scaled": info.get("split_scaled")})
    else:
        from rich.table import Table

        t = Table(title=cell(f"{info.get('name')} -> {result.out}"))
        for c in ("split", "subjects", "samples"):
            t.add_column(c, justify="right" if c != "split" else "left")
        for sp in ("train", "val", "test"):
            t.add_row(sp, str(info["subject_counts"][sp]), str(info["sample_counts"][sp]))
        con.print(t)
        scaled = " (scaled down: fewer subjects than the rule needs)" if info.get("split_scaled") else ""
        con.print(f"split: {info.get('split_rule')}{scaled}; {result.done} processed, {result.resumed} resumed")
        for s in result.skipped:  # subject ids and file names come from the data: never markup
            plain(f"skipped {s}", style="yellow")
        for f in result.failed:
            plain(f"failed {f}", style="red")
    if result.failed:
        from ..errors import DataError

        raise DataError(f"{len(result.failed)} subject(s) failed: {result.failed[0]}",
                        "fix or remove the files named above, then rerun the same command to finish")


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""
    from ..data.adapters import ADAPTERS

    app.command(
        "prepare",
        help=(prepare.__doc__ or "") + "\n\nDatasets: " + ", ".join(ADAPTERS),
        no_args_is_help=True,
    )(prepare)
