"""``medm2g evaluate`` (alias ``eval``): the paper's metrics, next to the published numbers.

* ``medm2g eval --dataset ixi --task mri-synthesis --data PREPARED --weights MODEL [-o DIR]`` runs a
  model on a prepared split and scores it;
* ``medm2g evaluate images|text|fid`` score outputs made elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import choices
from ..choices import value

if TYPE_CHECKING:
    from ..api.evaluation import EvaluateResult

from ._common import BatchSize, Device, Guidance, JsonOut, Overwrite, Seed, Steps, console, plain, print_json

EPILOG = (
    "Examples:\n\n"
    "  medm2g eval --dataset ixi --task mri-synthesis --data prepared/ixi --weights weights/tiny -o results/ixi\n\n"
    "  medm2g evaluate images --pred out/pd --ref data/pd --mask brain -o results/pd\n\n"
    "  medm2g evaluate images --pred out/ct --ref data/ct --modality ct --mask body\n\n"
    "  medm2g evaluate text --pred preds.jsonl --ref refs.jsonl --dataset iu-xray --json\n\n"
    "  medm2g evaluate fid --pred gen_png/ --ref real_png/ --fid-weights pt_inception-2015-12-05-6726825d.pth"
)

OutDir = Annotated[Path | None, typer.Option("--output", "-o", help="Folder for summary.json, per_case.csv and results.md.", show_default=False)]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help="ixi|brats2020|gold-atlas-pelvis|mimic-cxr|iu-xray|chestxray14|acdc|sliver07 (selects the published rows).", show_default=False)]
TaskOpt = Annotated[str | None, typer.Option("--task", help="mri-synthesis|mri-ct-translation|report-generation|image-generation|xray-generation.", show_default=False)]
FidWeights = Annotated[Path | None, typer.Option("--fid-weights", envvar="MEDM2G_FID_WEIGHTS", help="Local pt_inception-2015-12-05-6726825d.pth (pytorch-fid release) or a safetensors conversion; default $MEDM2G_FID_WEIGHTS.", show_default=False)]

sub = typer.Typer(
    help="Score generated images/reports with the paper's metrics (PSNR, SSIM, MAE, BLEU, METEOR, ROUGE-L, CIDEr, FID).",
    epilog=EPILOG,
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _render(result: EvaluateResult, json_out: bool) -> None:
    """Table on stderr (or JSON on stdout) of an :class:`medm2g_cli.api.evaluation.EvaluateResult`."""
    if json_out:
        print_json(result.to_dict())
        return
    report, written = result.report, result.files
    from rich.table import Table

    table = Table(title=report.title, title_justify="left")
    for h in report.headers:
        table.add_column(h, justify="left" if h in ("Method", "Source") else "right")
    for i, row in enumerate(report.rows):
        table.add_row(*row, style="bold" if i == 0 else None)
    con = console()
    con.print(table)
    for note in report.summary.get("notes") or []:
        con.print(f"[yellow]note:[/] {note}")
    settings = report.summary.get("settings") or {}
    if settings.get("normalisation"):
        con.print(f"protocol: {report.summary.get('protocol')} — {settings['normalisation']}")
    if written:
        plain("wrote " + ", ".join(str(p) for p in written))


@sub.callback()
def evaluate_model(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    task: TaskOpt = None,
    data: Annotated[Path | None, typer.Option("--data", help="Prepared folder (from medm2g prepare / phantom).", show_default=False)] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Model folder.", show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="Split to score (the supplement reports test).")] = "test",
    target: Annotated[str | None, typer.Option("--target", help="Another direction the dataset reports (BraTS: t1ce, the default, or flair).", show_default=False)] = None,
    output: OutDir = None,
    fid_weights: FidWeights = None,
    steps: Steps = None,
    guidance: Guidance = None,
    sampler: Annotated[choices.Sampler | None, typer.Option("--sampler", parser=choices.parse_sampler, help="ddim|dpm++ (default ddim).", show_default=False)] = None,
    seed: Seed = 0,
    batch_size: BatchSize = None,
    device: Device = choices.Device.cpu,
    max_subjects: Annotated[int | None, typer.Option("--max-subjects", help="Score only the first N subjects (quick checks).", show_default=False)] = None,
    no_meteor: Annotated[bool, typer.Option("--no-meteor", help="Report tasks: skip METEOR (it starts a Java process).")] = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Run a model on a prepared split and score it like the paper (when no subcommand is given).

    The direction is the dataset's default (IXI: T2+T1->PD, BraTS: T2+T1+FLAIR->T1ce or, with
    --target flair, T2+T1ce+T1->FLAIR, Gold Atlas: T2->CT, report generation: X-ray->report). --dataset defaults to the prepared folder's dataset.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..errors import ConfigError

    if task is None or data is None or weights is None:
        if dataset is None and task is None and data is None and weights is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        missing = [n for n, v in (("--task", task), ("--data", data), ("--weights", weights)) if v is None]
        raise ConfigError(f"model evaluation needs {', '.join(missing)}",
                          "pass --dataset D --task T --data PREPARED --weights MODEL, "
                          "or use a subcommand: medm2g evaluate images|text|fid")
    from ..api.evaluation import evaluate

    with console().status(f"evaluating {dataset or data} {task} on the {split} split"):
        result = evaluate(dataset, task, data, weights, split=split, out=output, fid_weights=fid_weights, steps=steps,
                          guidance=guidance, sampler=value(sampler), seed=seed, device=value(device), batch_size=batch_size,
                          overwrite=overwrite, max_subjects=max_subjects, meteor=not no_meteor, target=target)
    _render(result, json_out)


@sub.command("images")
def images(
    pred: Annotated[Path, typer.Option("--pred", help="Prediction file or folder (NIfTI/MHA/NRRD volumes or PNG images).")],
    ref: Annotated[Path, typer.Option("--ref", help="Reference file or folder; files are matched by name.")],
    protocol: Annotated[str, typer.Option("--protocol", help="default (per-volume max, Gaussian SSIM, per-subject mean ± std) | syndiff (SynDiff's test.py).")] = "default",
    mask: Annotated[str, typer.Option("--mask", help="brain|body|none: selects slices holding the mask (and the CT MAE region).")] = "none",
    modality: Annotated[str, typer.Option("--modality", help="ct|mri|xray (ct: HU range and MAE in HU).")] = "mri",
    hu_range: Annotated[tuple[float, float], typer.Option("--hu-range", help="CT: fixed HU clip range (low high).")] = (-1024.0, 3071.0),
    dataset: DatasetOpt = None,
    task: TaskOpt = None,
    setting: Annotated[str | None, typer.Option("--setting", help="Published setting to compare with, e.g. 'T2+T1->PD'.", show_default=False)] = None,
    output: OutDir = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """PSNR and SSIM (%), plus MAE in HU for CT: per subject, then mean ± std across subjects."""
    from ..api.evaluation import score_images

    _render(score_images(pred, ref, protocol=protocol, mask=mask, modality=modality, hu_range=hu_range, dataset=dataset,
                         task=task, setting=setting, out=output, overwrite=overwrite), json_out)


@sub.command("text")
def text(
    pred: Annotated[Path, typer.Option("--pred", help='Predictions .jsonl, one {"id": ..., "text": ...} per line.')],
    ref: Annotated[Path, typer.Option("--ref", help="References .jsonl, matched by id.")],
    dataset: Annotated[str, typer.Option("--dataset", help="iu-xray|mimic-cxr: R2Gen cleaner and length limit.")] = "iu-xray",
    max_length: Annotated[str, typer.Option("--max-length", help="medm2g (45 IU / 50 MIMIC) | r2gen (60 / 100) | none | N tokens + 1, as R2Gen's max_seq_length.")] = "medm2g",
    no_meteor: Annotated[bool, typer.Option("--no-meteor", help="Skip METEOR (it starts a Java process).")] = False,
    output: OutDir = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D with R2Gen's cleaning, scored as R2Gen does."""
    from ..api.evaluation import score_texts

    _render(score_texts(pred, ref, dataset=dataset, max_length=max_length, meteor=not no_meteor, out=output,
                        overwrite=overwrite), json_out)


@sub.command("fid")
def fid(
    pred: Annotated[Path, typer.Option("--pred", help="Folder of generated images (8-bit PNG recommended).")],
    ref: Annotated[Path, typer.Option("--ref", help="Folder of reference images, windowed identically.")],
    fid_weights: FidWeights = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 16,
    device: Device = choices.Device.cpu,
    dataset: DatasetOpt = None,
    task: TaskOpt = None,
    output: OutDir = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """FID with the standard Inception-v3 (2015-12-05) weights from a local file; N is always reported."""
    from ..api.evaluation import score_fid

    _render(score_fid(pred, ref, fid_weights=fid_weights, batch_size=batch_size, device=value(device), dataset=dataset,
                      task=task, out=output, overwrite=overwrite), json_out)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and its alias ``eval`` to the root app."""
    app.add_typer(sub, name="evaluate")
    app.add_typer(sub, name="eval", help="Alias of `medm2g evaluate`.")
