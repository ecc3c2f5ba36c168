"""``medm2g weights``: create (``init``), describe (``inspect``), check (``verify``), combine (``merge``),
install into the per-user data folder (``install``), archive (``export``) model folders and store the
training latents' statistics in them (``calibrate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import choices
from ..choices import value
from ._common import Device, JsonOut, Overwrite, console, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g weights init --preset tiny -o weights/tiny\n\n"
    "  medm2g weights init --preset full --sd15 ~/models/sd15 --clip ~/models/clip-vit-large-patch14 -o weights/full\n\n"
    "  medm2g weights inspect weights/tiny --json\n\n"
    "  medm2g weights inspect --preset full          (counts only, no weights allocated)\n\n"
    "  medm2g weights verify weights/tiny\n\n"
    "  medm2g weights merge runs/brain/model --take unet_text=runs/chest/model -o weights/merged\n\n"
    "  medm2g weights export weights/medm2g-demo -o medm2g-demo.tar      (carry it to an offline machine)\n\n"
    "  medm2g weights install medm2g-demo.tar          (into $MEDM2G_HOME/models/; the first one is the default)\n\n"
    "  medm2g weights calibrate weights/medm2g-demo --data demo-data/brain128all --data demo-data/chest128"
)

Local = Annotated[Path | None, typer.Option(show_default=False)]


def _fmt(n: int) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e5 else f"{n:,}"


def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to create.")],
    preset: Annotated[str, typer.Option("--preset", help="tiny|small|full (full = Table A3).")] = "tiny",
    sd15: Annotated[Path | None, typer.Option("--sd15", help="Local diffusers-layout Stable Diffusion 1.5 folder (unet/, vae/): architecture and weights of every imaging branch.", show_default=False)] = None,
    clip: Annotated[Path | None, typer.Option("--clip", help="Local transformers CLIP folder: text encoder, vision encoders (RGB->1 channel), tokenizer.", show_default=False)] = None,
    bert: Annotated[Path | None, typer.Option("--bert", help="Local transformers BERT folder: text VAE encoder and its tokenizer.", show_default=False)] = None,
    gpt2: Annotated[Path | None, typer.Option("--gpt2", help="Local transformers GPT-2 folder: text VAE decoder and its tokenizer.", show_default=False)] = None,
    versatile: Annotated[Path | None, typer.Option("--versatile", help="Local Versatile Diffusion folder (diffusers layout, text_unet/ in safetensors): the text diffuser.", show_default=False)] = None,
    optimus: Annotated[Path | None, typer.Option("--optimus", help="Local Optimus folder (encoder/, decoder/ in safetensors, with tokenizers): the whole text VAE.", show_default=False)] = None,
    modalities: Annotated[str | None, typer.Option("--modalities", help="Comma-separated subset, e.g. text,xray (default: all).", show_default=False)] = None,
    conditioning: Annotated[str, typer.Option("--conditioning", help="context (cross-attended source tokens) | concat (stacked source latents).")] = "context",
    texts: Annotated[Path | None, typer.Option("--texts", help="Text file (one report per line) to train the tokenizer on.", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh weights.")] = 0,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Create a model folder: fresh weights of a preset, optionally initialised from local pretrained folders."""
    from ..config import model_preset
    from ..errors import InputError
    from ..io.atomic import check_output

    check_output(output, overwrite)
    overrides: dict = {"conditioning": conditioning}
    if modalities:
        overrides["modalities"] = tuple(m.strip() for m in modalities.split(",") if m.strip())
    cfg = model_preset(preset, **overrides)
    corpus = None
    if texts is not None:
        if not texts.is_file():
            raise InputError(f"texts file '{texts}' does not exist", "give a text file with one report per line")
        corpus = [line for line in texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    from ..engine import MedM2G, init_from_pretrained
    from ..engine.io import parameter_counts

    with console().status(f"building the {preset} model"):
        if any(p is not None for p in (sd15, clip, bert, gpt2, optimus, versatile)):
            model = init_from_pretrained(cfg, seed=seed, sd15=sd15, clip=clip, bert=bert, gpt2=gpt2, optimus=optimus,
                                         versatile=versatile,
                                         tokenizer_texts=corpus)
        else:
            model = MedM2G.from_config(cfg, seed=seed, tokenizer_texts=corpus)
        model.provenance["preset"] = preset
        model.save_pretrained(output, overwrite=overwrite)
    counts = parameter_counts(model)
    if json_out:
        print_json({"output": str(output), "preset": preset, "modalities": list(cfg.modalities),
                    "parameters": counts, "provenance": model.provenance})
    else:
        console().print(f"wrote {output} ({preset}, {', '.join(cfg.modalities)}; {_fmt(counts['total'])} parameters)")


def inspect(
    path: Annotated[Path | None, typer.Argument(help="Model folder.", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Describe a preset instead (built on the meta device, no weights allocated).", show_default=False)] = None,
    json_out: JsonOut = False,
) -> None:
    """Components, parameter counts per component and modality, config, scale factors and hashes."""
    from ..errors import ConfigError

    if (path is None) == (preset is None):
        raise ConfigError("give a model folder or --preset NAME (not both)", "e.g. medm2g weights inspect --preset full")
    from ..engine import describe

    info = describe(path=path, preset=preset)
    if json_out:
        print_json(info)
        return
    from rich.table import Table

    con = console()
    title = f"preset {preset} (meta device)" if preset else str(path)
    table = Table(title=f"MedM2G {title}")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for name, n in info["parameters"]["components"].items():
        table.add_row(name, _fmt(n))
    table.add_row("[bold]total", f"[bold]{_fmt(info['parameters']['total'])}")
    con.print(table)
    per = ", ".join(f"{m} {_fmt(n)}" for m, n in info["parameters"]["modalities"].items())
    con.print(f"per modality: {per}")
    diff = ", ".join(f"{m} {_fmt(n)}" for m, n in info["parameters"]["diffusers"].items())
    con.print(f"per imaging branch (UNet + autoencoder): {diff}")
    con.print(f"conditioning: {info['conditioning']}; scale factors: {info['scale_factors']}")
    if info.get("license") or info.get("intended_use"):
        con.print(f"licence: {info.get('license') or 'not stated'}; intended use: {info.get('intended_use') or 'not stated'}",
                  highlight=False)
    if info.get("sha256"):
        con.print(f"{len(info['sha256'])} files with sha256 in medm2g.json (check with `medm2g weights verify`)")


def verify(
    path: Annotated[Path, typer.Argument(help="Model folder.")],
    json_out: JsonOut = False,
) -> None:
    """Check the sha256 of every file against medm2g.json (exit 2 listing what differs)."""
    from ..engine import verify_folder
    from ..engine.store import verification_error

    problems = verify_folder(path)
    err = verification_error(path, problems)
    if json_out:
        print_json({"path": str(path), "ok": err is None, **problems})
    if err is not None:
        raise err
    if not json_out:
        console().print(f"{path}: all files match medm2g.json")


def install(
    source: Annotated[Path, typer.Argument(metavar="PATH|ARCHIVE", help="A model folder, or a .tar/.tar.gz from `weights export`.")],
    name: Annotated[str | None, typer.Option("--name", help="Install under this name (default: the folder's name).", show_default=False)] = None,
    default: Annotated[bool | None, typer.Option("--default/--no-default", help="Make it the default model (default: only if none is set).", show_default=False)] = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Copy a model into the per-user data folder ($MEDM2G_HOME/models/NAME), checking every sha256."""
    from ..engine.store import install_model

    with console().status(f"installing {source}"):
        info = install_model(source, name=name, overwrite=overwrite, make_default=default)
    if json_out:
        print_json(info)
    else:
        note = " (the default model)" if info["default"] else f" (use it with --weights {info['name']})"
        console().print(f"installed {info['name']} in {info['path']}: {info['files']} files verified{note}",
                        highlight=False)


def export(
    path: Annotated[Path, typer.Argument(metavar="DIR", help="Model folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Archive to write (.tar or .tar.gz).")],
    name: Annotated[str | None, typer.Option("--name", help="Folder name inside the archive (default: DIR's name).", show_default=False)] = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Write a verified model folder as a tar archive for `medm2g weights install` elsewhere."""
    from ..engine.store import export_model

    with console().status(f"exporting {path}"):
        info = export_model(path, output, name=name, overwrite=overwrite)
    if json_out:
        print_json(info)
    else:
        console().print(f"wrote {info['output']} ({info['files']} files, {info['bytes'] / 1e6:.1f} MB, "
                        f"sha256 {info['sha256'][:16]}...)", highlight=False)


def merge(
    base: Annotated[Path, typer.Argument(help="Model folder to start from.")],
    take: Annotated[list[str], typer.Option("--take", help="COMPONENT=MODEL_DIR: copy that component (e.g. unet_text, vae_ct) from another folder of the same architecture; repeat.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Combine components trained in separate runs (refuses a diffuser whose autoencoder or encoders differ)."""
    from ..engine.merge import merge_folders
    from ..errors import ConfigError
    from ..io.atomic import check_output

    sources = [p for p in (t.partition("=")[2].strip() for t in take) if p]
    check_output(output, overwrite, inputs=[base, *sources])
    takes: dict[str, Path] = {}
    for t in take:
        comp, sep, path = t.partition("=")
        if not sep or not comp.strip() or not path.strip():
            raise ConfigError(f"--take '{t}' is not COMPONENT=MODEL_DIR", "e.g. --take unet_text=runs/chest/model")
        takes[comp.strip()] = Path(path.strip())
    with console().status("merging"):
        info = merge_folders(base, takes, output, overwrite=overwrite)
    if json_out:
        print_json(info)
    else:
        console().print(f"wrote {output}: {', '.join(takes)} taken into {base}")


def calibrate(
    path: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder.")],
    data: Annotated[list[Path], typer.Option("--data", help="Prepared folder (medm2g prepare/phantom) the model was trained on; repeat. Its train split is used.")],
    max_slices: Annotated[int, typer.Option("--max-slices", help="Slices encoded per modality/contrast (evenly spaced).")] = 1500,
    device: Device = choices.Device.cpu,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Store the training latents' statistics in the model folder (latent_reference.json), for the
    applicability guard's latent distance check; its sha256 is recorded in medm2g.json."""
    from ..inference.latent_check import calibrate as run_calibration

    with console().status(f"encoding the training slices of {', '.join(str(d) for d in data)}"):
        info = run_calibration(path, data, overwrite=overwrite, device=value(device), max_slices=max_slices,
                               log=console().print)
    if json_out:
        print_json(info)
    else:
        console().print(f"wrote {info['path']} ({', '.join(f'{k}: {n} slices' for k, n in info['keys'].items())}; "
                        f"{info['seconds']:.0f} s)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``medm2g weights init|inspect|verify|merge|install|export|calibrate``."""
    sub = typer.Typer(help="Create, inspect and verify model folders (offline; safetensors only).", epilog=EPILOG,
                      no_args_is_help=True)
    sub.command("init", epilog=EPILOG)(init)
    sub.command("inspect")(inspect)
    sub.command("verify")(verify)
    sub.command("merge")(merge)
    sub.command("install")(install)
    sub.command("export")(export)
    sub.command("calibrate")(calibrate)
    app.add_typer(sub, name="weights")
