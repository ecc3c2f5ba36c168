"""``medm2g convert``: any of NIfTI, DICOM, MetaImage, NRRD, PNG/JPEG to any other, geometry kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import Anonymize, JsonOut, Overwrite, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g convert dicom_folder/ ct.nii.gz\n\n"
    "  medm2g convert series.zip ct.mha --series 1.3.12.2.1107.5.1.4\n\n"
    "  medm2g convert ct.nii.gz ct_dicom/ --format dicom --modality ct\n\n"
    "  medm2g convert ct.nii.gz slices/ --format png --window lung --axis coronal --bits 8\n\n"
    "  medm2g convert slices/ back.nii.gz --reference ct.nii.gz\n\n"
    "  medm2g convert fmri.nii.gz vol0.nii.gz --volume 0"
)


def convert(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input image, DICOM folder/zip or PNG slice folder.", show_default=False)],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output file or folder (format from its suffix or --format).", show_default=False)],
    fmt: Annotated[str | None, typer.Option("--format", help="nifti|dicom|mha|nrrd|png (default: from OUT's suffix).", show_default=False)] = None,
    modality: Annotated[str | None, typer.Option("--modality", help="ct|mri|xray (default: from DICOM tags).", show_default=False)] = None,
    window: Annotated[str | None, typer.Option("--window", help="PNG window: a CT preset (brain, bone, lung, soft-tissue ...), auto, or LOW,HIGH.", show_default=False)] = None,
    axis: Annotated[str, typer.Option("--axis", help="Slice axis for PNG folders: axial|coronal|sagittal.")] = "axial",
    reference: Annotated[Path | None, typer.Option("--reference", help="Volume giving a PNG folder its grid (and DICOM outputs their study).", show_default=False)] = None,
    series: Annotated[str | None, typer.Option("--series", help="DICOM SeriesInstanceUID (or series number) when the input holds several.", show_default=False)] = None,
    volume: Annotated[int | None, typer.Option("--volume", help="Volume index of a 4-D NIfTI.", show_default=False)] = None,
    bits: Annotated[int, typer.Option("--bits", help="PNG bit depth: 16 or 8.")] = 16,
    allow_irregular: Annotated[bool, typer.Option("--allow-irregular", help="Accept uneven DICOM slice spacing / gantry tilt (kept as a sheared affine).")] = False,
    anonymize: Anonymize = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Convert between NIfTI, DICOM, MetaImage, NRRD and PNG/JPEG without losing the geometry."""
    from ..io.tools import convert as do_convert

    with console().status(f"converting {src.name}"):
        data = do_convert(src, dst, format=fmt, modality=modality, window=window, axis=axis, reference=reference,
                          series=series, volume_index=volume, bits=bits, allow_irregular=allow_irregular,
                          overwrite=overwrite, anonymize=anonymize)
    if json_out:
        print_json(data)
        return
    shape = " x ".join(str(v) for v in data["shape"])
    plain(f"wrote {data['output']} ({data['format']}, {shape}, {data['orientation']})")
    for note in data.get("notes") or []:
        plain(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add ``medm2g convert``."""
    app.command("convert", epilog=EPILOG)(convert)
