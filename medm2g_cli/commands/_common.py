"""Options shared by several commands, defined once (Typer ``Annotated`` aliases) and small helpers.

Only this module and the command modules import typer/rich.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import choices

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
Weights = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        help="Model folder or installed model name. Default: $MEDM2G_WEIGHTS, else the default model installed "
             "by `medm2g weights install` ($MEDM2G_HOME), else weights/medm2g-demo of a source checkout.",
        show_default=False,
    ),
]
# Choice options: the Enum lists the values in --help; the parser accepts what the API accepts (case,
# aliases, cuda:N) and fails with the API's one-line error (exit 2).
Device = Annotated[choices.Device, typer.Option("--device", parser=choices.parse_device, help="auto|cpu|cuda|cuda:N|mps (warns when falling back to CPU).")]
Precision = Annotated[choices.Precision, typer.Option("--precision", parser=choices.parse_precision, help="auto: fp32, with the autoencoders in bf16 on CPUs with native bf16 | fp32: all fp32 | bf16|fp16: autocast of the whole model.")]
Steps = Annotated[int | None, typer.Option("--steps", help="Sampler steps (default: the model's recommended settings in its medm2g.json, else 50 DDIM, Table A3).", show_default=False)]
Guidance = Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale (default 2.0).", show_default=False)]
Eta = Annotated[float | None, typer.Option("--eta", help="DDIM eta (default 1.0).", show_default=False)]
Sampler = Annotated[choices.Sampler | None, typer.Option("--sampler", parser=choices.parse_sampler, help="ddim|dpm++|sde-dpm++|unipc (default: the model's recommended settings in its medm2g.json, else ddim). Naming a sampler ignores all of the model's recommended settings.", show_default=False)]
GuidanceStop = Annotated[float | None, typer.Option("--guidance-stop", help="Fraction of the steps that use guidance; later steps cost half (default: the model's, else 1).", show_default=False)]
Spacing = Annotated[choices.Spacing | None, typer.Option("--spacing", parser=choices.parse_spacing, help="Timestep spacing: leading|linspace|trailing|karras (karras: not ddim; default: the model's, else the sampler's own).", show_default=False)]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives identical outputs.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Slices per forward pass (default: chosen from free memory).", show_default=False)]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the UNets (minutes of compile time; pays off on GPU volume jobs).")]
Anonymize = Annotated[bool, typer.Option("--anonymize", help="De-identify DICOM outputs (DICOM PS3.15 Basic Profile, clean descriptors).")]
SkipVerify = Annotated[bool, typer.Option("--skip-verify", help="Load weights even if their sha256 does not match medm2g.json.")]


def print_json(obj: Any) -> None:
    """Print an object as indented JSON on stdout (numpy scalars and paths converted)."""

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(type(o).__name__)

    sys.stdout.write(json.dumps(obj, indent=2, default=default) + "\n")


def console() -> Any:
    """A rich console on stderr for progress and tables (stdout stays clean for --json)."""
    from rich.console import Console

    return Console(stderr=True)


def plain(text: str, style: str | None = None) -> None:
    """Print a line on stderr as given: never parsed as rich markup (a file named ``[/]x`` must not
    crash or restyle the output), control characters from files escaped (:mod:`medm2g_cli.safetext`)."""
    from ..safetext import printable

    console().print(printable(text), style=style, highlight=False, markup=False, soft_wrap=True)


def cell(value: Any) -> Any:
    """A rich table cell or title holding text from a file: literal (no markup), control characters escaped."""
    from rich.text import Text

    from ..safetext import printable

    return Text(printable(value))
