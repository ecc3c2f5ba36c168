"""``medm2g info``: shape, spacing, orientation, dtype, value range and modality of an image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOut, cell, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g info scan.nii.gz\n\n"
    "  medm2g info dicom_folder/ --json            (lists the series when there are several)\n\n"
    "  medm2g info dicom_folder/ --series 1.2.840.113619.2.55.3  --modality ct\n\n"
    "  medm2g info fmri.nii.gz --volume 0"
)


def info(
    path: Annotated[Path, typer.Argument(help="NIfTI, DICOM folder/zip/file, .mha/.mhd/.nrrd or PNG/JPEG.", show_default=False)],
    modality: Annotated[str | None, typer.Option("--modality", help="ct|mri|xray (default: from DICOM tags).", show_default=False)] = None,
    series: Annotated[str | None, typer.Option("--series", help="DICOM SeriesInstanceUID (or series number) to describe.", show_default=False)] = None,
    volume: Annotated[int | None, typer.Option("--volume", help="Volume index of a 4-D NIfTI.", show_default=False)] = None,
    allow_irregular: Annotated[bool, typer.Option("--allow-irregular", help="Accept uneven DICOM slice spacing / gantry tilt.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Describe an image: shape, spacing, orientation code, dtype, value range, modality, DICOM series."""
    from ..io.tools import volume_info

    data = volume_info(path, modality=modality, series=series, volume_index=volume, allow_irregular=allow_irregular)
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    # Header text and file names are the file author's: literal cells, never rich markup.
    table = Table(title=cell(path), show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in ("format", "shape", "spacing", "orientation", "dtype", "min", "max", "modality", "n_series",
                "series_uid", "series_description", "n_volumes"):
        if data.get(key) is not None:
            val = data[key]
            if key == "spacing":
                val = " x ".join(f"{v:g}" for v in val) + " mm"
            elif key == "shape":
                val = " x ".join(str(v) for v in val)
            table.add_row(key, cell(val))
    con = console()
    con.print(table)
    if data.get("series") and (data.get("n_series") or 0) > 1:
        st = Table(title="series", title_justify="left")
        for col in ("uid", "number", "modality", "n_slices", "description"):
            st.add_column(col)
        for s in data["series"]:
            st.add_row(cell(s["uid"]), cell(s["number"] if s["number"] is not None else "-"),
                       cell(s["modality"] or "-"), cell(s["n_slices"]), cell(s["description"] or "-"))
        con.print(st)
    for note in data.get("notes") or []:
        plain(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add ``medm2g info``."""
    app.command("info", epilog=EPILOG)(info)
