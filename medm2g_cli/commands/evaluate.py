"""``medm2g evaluate`` (alias ``eval``): the paper's metrics, next to the published numbers.

* ``medm2g eval --dataset ixi --task mri-synthesis --data PREPARED --weights MODEL [-o DIR]`` runs a
  model on a prepared split and scores it;
* ``medm2g evaluate images|text|fid`` score outputs made elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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


def _render(report: Any, json_out: bool, out: Path | None, overwrite: bool, written: list[Path] | None = None) -> None:
    """Table on stderr (or JSON on stdout); write the files when -o is given."""
    if out is not None and written is None:
        from ..metrics.tables import write_results

        written = write_results(out, report.summary, report.per_case, report.markdown, overwrite=overwrite)
    if json_out:
        payload = dict(report.summary)
        if written:
            payload["files"] = [str(p) for p in written]
        print_json(payload)
        return
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
    sampler: Annotated[str | None, typer.Option("--sampler", help="ddim|dpm++ (default ddim).", show_default=False)] = None,
    seed: Seed = 0,
    batch_size: BatchSize = None,
    device: Device = "cpu",
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
    from ..metrics.evaluate_model import run_model_eval

    with console().status(f"evaluating {dataset or data} {task} on the {split} split"):
        report = run_model_eval(dataset, task, data, weights, split, output, fid_weights=fid_weights, steps=steps,
                                guidance=guidance, sampler=sampler, seed=seed, device=device,
                                batch_size=batch_size or 8, overwrite=overwrite, max_subjects=max_subjects,
                                meteor=not no_meteor, target=target)
    written = [output / n for n in ("summary.json", "per_case.csv", "results.md")] if output else None
    _render(report, json_out, output, overwrite, written=written)


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
    from ..io.atomic import check_output
    from ..metrics.evaluate_model import image_report
    from ..metrics.protocols import evaluate_images

    if output is not None:
        check_output(output, overwrite, inputs=[pred, ref])
    ev = evaluate_images(pred, ref, protocol=protocol, modality=modality.lower(), mask=mask.lower(),
                         hu_range=(float(hu_range[0]), float(hu_range[1])))
    _render(image_report(ev, dataset=dataset, task=task, setting=setting), json_out, output, overwrite)


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
    from ..errors import ConfigError
    from ..io.atomic import check_output
    from ..metrics.evaluate_model import text_report
    from ..metrics.text import evaluate_texts, read_jsonl

    if output is not None:
        check_output(output, overwrite, inputs=[pred, ref])
    limit: Any = max_length.lower()
    if limit == "none":
        limit = None
    elif limit not in ("medm2g", "r2gen"):
        try:
            limit = int(limit)
        except ValueError:
            raise ConfigError(f"--max-length '{max_length}' is not valid", "use medm2g, r2gen, none or an integer") from None
    ev = evaluate_texts(read_jsonl(pred, "prediction"), read_jsonl(ref, "reference"), dataset=dataset,
                        max_length=limit, meteor=not no_meteor)
    _render(text_report(ev), json_out, output, overwrite)


@sub.command("fid")
def fid(
    pred: Annotated[Path, typer.Option("--pred", help="Folder of generated images (8-bit PNG recommended).")],
    ref: Annotated[Path, typer.Option("--ref", help="Folder of reference images, windowed identically.")],
    fid_weights: FidWeights = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 16,
    device: Device = "cpu",
    dataset: DatasetOpt = None,
    task: TaskOpt = None,
    output: OutDir = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """FID with the standard Inception-v3 (2015-12-05) weights from a local file; N is always reported."""
    from ..io.atomic import check_output
    from ..metrics.evaluate_model import fid_report
    from ..metrics.fid import compute_fid, resolve_fid_weights

    resolve_fid_weights(fid_weights)
    if output is not None:
        check_output(output, overwrite, inputs=[pred, ref])
    res = compute_fid(pred, ref, fid_weights, batch_size=batch_size, device=device)
    _render(fid_report(res, dataset=dataset, task=task), json_out, output, overwrite)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and its alias ``eval`` to the root app."""
    app.add_typer(sub, name="evaluate")
    app.add_typer(sub, name="eval", help="Alias of `medm2g evaluate`.")
