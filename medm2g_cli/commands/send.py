"""``medm2g send``: C-STORE DICOM files to a PACS or any DICOM node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOut, console, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g send sct_dicom/ --to ORTHANC@127.0.0.1:4242\n\n"
    "  medm2g send a.dcm b.dcm --to PACS@pacs.example.org:104 --calling-ae MEDM2G\n\n"
    "Several files go over one association (the SOP classes and transfer syntaxes present are "
    "negotiated). Files the peer did not store are listed and the exit code is 2."
)

MAX_LISTED = 20


def send(
    inputs: Annotated[list[Path], typer.Argument(metavar="DIR|FILES", help="DICOM files or folders (searched recursively).", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="The receiving node, AE@host:port.", show_default=False)],
    calling_ae: Annotated[str, typer.Option("--calling-ae", help="This side's AE title.")] = "MEDM2G",
    timeout: Annotated[float, typer.Option("--timeout", help="Network timeout in seconds.")] = 30.0,
    json_out: JsonOut = False,
) -> None:
    """Send DICOM files to a DICOM node (C-STORE SCU)."""
    from ..dicomnet import parse_peer, validate_ae_title
    from ..dicomnet.send import collect_files, send_files

    peer = parse_peer(to)
    calling = validate_ae_title(calling_ae, "--calling-ae")
    files = collect_files(inputs)
    with console().status(f"sending {len(files)} file(s) to {peer}"):
        rep = send_files(files, peer, calling_ae=calling, timeout=timeout)
    if json_out:
        print_json(rep.as_dict())
    err = rep.error()
    if err is None:
        if not json_out:
            console().print(f"sent {len(rep.sent)} file(s) to {peer} in {rep.associations} association(s) "
                            f"({rep.seconds:.1f} s)", highlight=False)
        return
    if not json_out and rep.association_error is None:
        con = console()
        for path, why in rep.failed[:MAX_LISTED]:
            con.print(f"not sent: {path} — {why}", highlight=False, markup=False, soft_wrap=True)
        if len(rep.failed) > MAX_LISTED:
            con.print(f"... and {len(rep.failed) - MAX_LISTED} more (--json lists all)", highlight=False)
    raise err


def register(app: typer.Typer) -> None:
    """Add ``send`` to the root app."""
    app.command("send", epilog=EPILOG)(send)
