"""Scoring of produced predictions, and the model-evaluation driver behind ``medm2g eval``.

:func:`evaluate_predictions` scores prediction/reference pairs already in memory (image stacks per
subject, or report texts per id) and builds everything the command writes: summary, per-case rows
and the Markdown table with the supplement's numbers. :func:`run_model_eval` reads a prepared
folder (``dataset.json`` + ``samples.jsonl`` + slices in [-1, 1]), runs the model on one split for
the task's default direction and scores it through :func:`evaluate_predictions`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .fid import FIDResult
from .protocols import CT_HU_RANGE, ImageEvaluation, evaluate_pair
from .tables import result_table, results_markdown
from .text import TextEvaluation, evaluate_texts


@dataclass(frozen=True)
class EvalSpec:
    """What ``medm2g eval`` runs for a dataset/task: target, sources, metric kind, table setting."""

    target: str
    sources: tuple[str, ...]
    kind: str  # "image" (PSNR/SSIM[/MAE]), "text" (BLEU...), "fid"
    setting: str
    mask: str = "none"


EVAL_SPECS: dict[tuple[str, str], EvalSpec] = {
    ("ixi", "mri-synthesis"): EvalSpec("pd", ("t2", "t1"), "image", "T2+T1→PD", "brain"),
    ("brats2020", "mri-synthesis"): EvalSpec("t1ce", ("t2", "t1", "flair"), "image", "T2+T1+FLAIR→T1ce", "brain"),
    ("gold-atlas-pelvis", "mri-ct-translation"): EvalSpec("ct", ("t2",), "image", "T2→CT", "body"),
    ("mimic-cxr", "report-generation"): EvalSpec("text", ("xray",), "text", "X-ray→report"),
    ("iu-xray", "report-generation"): EvalSpec("text", ("xray",), "text", "X-ray→report"),
    ("mimic-cxr", "xray-generation"): EvalSpec("xray", ("text",), "fid", "report→X-ray"),
    ("chestxray14", "image-generation"): EvalSpec("xray", ("text",), "fid", "text→X-ray"),
    ("acdc", "image-generation"): EvalSpec("mri", ("text",), "fid", "text→MRI"),
    ("sliver07", "image-generation"): EvalSpec("ct", ("text",), "fid", "text→CT"),
}
"""Default direction per dataset/task: the setting the supplement reports (Tables A4-A7)."""

TASK_ALIASES = {"report": "report-generation", "mri": "mri-synthesis", "translation": "mri-ct-translation",
                "mri-ct": "mri-ct-translation", "image": "image-generation", "xray": "xray-generation"}


def get_spec(dataset: str, task: str) -> EvalSpec:
    """The evaluation spec of a dataset/task, or a ConfigError listing the valid pairs."""
    d = dataset.lower().replace("_", "-")
    d = "brats2020" if d == "brats" else d
    t = TASK_ALIASES.get(task.lower(), task.lower())
    if (d, t) not in EVAL_SPECS:
        valid = ", ".join(f"{a}/{b}" for a, b in EVAL_SPECS)
        raise ConfigError(f"no evaluation defined for dataset '{dataset}' with task '{task}'", f"use one of: {valid}")
    return EVAL_SPECS[(d, t)]


@dataclass
class EvalReport:
    """Everything an evaluation prints and writes."""

    title: str
    summary: dict[str, Any]
    per_case: list[dict[str, Any]]
    markdown: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def image_report(ev: ImageEvaluation, *, dataset: str | None = None, task: str | None = None,
                 setting: str | None = None, label: str = "medm2g") -> EvalReport:
    """Summary, per-subject rows and the Markdown/rich table of an image evaluation."""
    summary = ev.summary()
    summary.update({"dataset": dataset, "task": task, "setting": setting})
    per_case = []
    for c in ev.cases:
        row: dict[str, Any] = {"case": c.name, "n_slices": c.n_slices, "psnr_db": round(c.psnr, 6),
                               "ssim_pct": round(c.ssim * 100.0, 6)}
        if c.mae_hu is not None:
            row["mae_hu"] = round(c.mae_hu, 6)
        per_case.append(row)
    title = f"Image metrics ({ev.protocol} protocol)" + (f" — {dataset} {setting or task or ''}" if dataset else "")
    return _finish(title, summary, per_case, dataset, task, setting, label, n=summary["n_subjects"])


def text_report(ev: TextEvaluation, *, task: str | None = "report-generation", label: str = "medm2g") -> EvalReport:
    """Summary, per-report rows and tables of a report evaluation."""
    summary = ev.summary()
    summary.update({"task": task})
    per_case = [{"id": i, **{k: round(v, 6) for k, v in m.items()}} for i, m in ev.per_case.items()]
    return _finish(f"Report metrics — {ev.dataset}", summary, per_case, ev.dataset, task, None, label, n=ev.n)


def fid_report(res: FIDResult, *, dataset: str | None = None, task: str | None = None, setting: str | None = None,
               label: str = "medm2g", per_case: Sequence[dict[str, Any]] = ()) -> EvalReport:
    """Summary and tables of an FID evaluation (N always reported)."""
    summary = res.summary()
    summary["metrics"] = {"fid": {"mean": res.fid, "std": None}}
    summary.update({"dataset": dataset, "task": task, "setting": setting})
    return _finish(f"FID (N={res.n_pred} generated vs {res.n_ref} reference)" + (f" — {dataset}" if dataset else ""),
                   summary, list(per_case), dataset, task, setting, label, n=res.n_pred)


def _finish(title: str, summary: dict[str, Any], per_case: list[dict[str, Any]], dataset: str | None,
            task: str | None, setting: str | None, label: str, n: int) -> EvalReport:
    from .published import published_for

    published = published_for(dataset, task, setting) if dataset else []
    headers, rows = result_table(summary["metrics"], label=label, n=n, published=published)
    md = results_markdown(title, summary, dataset=dataset, task=task, setting=setting, label=label)
    return EvalReport(title, summary, per_case, md, headers, rows)


def evaluate_predictions(pred: dict[str, Any], ref: dict[str, Any], *, kind: str, dataset: str | None = None,
                         task: str | None = None, setting: str | None = None, modality: str = "mri",
                         protocol: str = "default", mask: str = "none",
                         hu_range: tuple[float, float] = CT_HU_RANGE, label: str = "medm2g") -> EvalReport:
    """Score in-memory prediction/reference pairs matched by key.

    ``kind="image"``: values are (n_slices, H, W) stacks per subject in the same intensity units
    (HU for CT); ``kind="text"``: values are report strings per id (``dataset`` picks the R2Gen
    cleaner). Mismatched keys stop with one line listing them.
    """
    from ..errors import InputError

    only_p, only_r = sorted(set(pred) - set(ref)), sorted(set(ref) - set(pred))
    if only_p or only_r:
        raise InputError(f"predictions and references do not match ({len(pred)} vs {len(ref)}; only in predictions: "
                         f"{', '.join(only_p[:8]) or '-'}; only in references: {', '.join(only_r[:8]) or '-'})",
                         "score the same cases on both sides")
    if kind == "text":
        ev = evaluate_texts({k: str(v) for k, v in pred.items()}, {k: str(v) for k, v in ref.items()},
                            dataset=dataset or "iu-xray")
        return text_report(ev, task=task, label=label)
    if kind != "image":
        raise ConfigError(f"unknown evaluation kind '{kind}'", "use image or text")
    cases = [evaluate_pair(k, np.asarray(pred[k], dtype=np.float64), np.asarray(ref[k], dtype=np.float64),
                           protocol=protocol, modality=modality, mask=mask, hu_range=hu_range) for k in sorted(ref)]
    ev = ImageEvaluation(protocol=protocol, modality=modality, mask=mask, cases=cases,
                         settings={"data_range": 1.0, "hu_range": list(hu_range) if modality == "ct" else None})
    return image_report(ev, dataset=dataset, task=task, setting=setting, label=label)


# ------------------------------------------------------------------------------- model evaluation

Predictor = Callable[[str, dict[str, Any]], Any]
"""``predict(target, sources)``: sources map a key (``t1``, ``xray``, ``text``...) to a batch —
a tensor [B, 1, H, W] in [-1, 1] or a list of B reports; returns the target batch likewise."""


def engine_predictor(weights: Path, *, device: str = "cpu", steps: int | None = None, guidance: float | None = None,
                     seed: int = 0, max_length: int | None = None) -> tuple[Predictor, int]:
    """A :data:`Predictor` backed by the MedM2G engine, and the model's image size."""
    from ..config import SampleConfig
    from ..engine.model import Condition, MedM2G

    model = MedM2G.from_pretrained(weights, device=device)
    sample = SampleConfig(seed=seed)
    if steps is not None:
        sample.steps = steps
    if guidance is not None:
        sample.guidance = guidance

    def predict(target: str, sources: dict[str, Any]) -> Any:
        conds = [Condition(k, v.to(model.device) if hasattr(v, "to") else v) for k, v in sources.items()]
        out = model.generate(target, conds, sample=sample, max_length=max_length)
        return out if isinstance(out, list) else out.detach().float().cpu()

    return predict, int(model.image_size)


def run_model_eval(dataset: str, task: str, data_dir: Path, weights: Path | None, split: str = "test",
                   out: Path | None = None, *, predictor: Predictor | None = None, image_size: int | None = None,
                   device: str = "cpu", steps: int | None = None, seed: int = 0, batch_size: int = 8,
                   fid_weights: Path | None = None, overwrite: bool = False, limit: int | None = None) -> EvalReport:
    """Run the model on a prepared split and score it the way the supplement's table does.

    Images: prepared slices (model range [-1, 1]) of each subject are generated from the sources
    and stacked per subject; both sides go back to [0, 1] (CT back to HU through the model window)
    and are scored with the default protocol. Reports: generated from the X-rays, scored with the
    R2Gen protocol. FID tasks: generated and reference slices are written as 8-bit PNG (identical
    windowing) and compared with the FID Inception (``fid_weights`` needed, checked first).
    ``predictor`` replaces the engine (tests, other back-ends).
    """
    from ..training.datasets import TrainingData, load_image

    spec = get_spec(dataset, task)
    d = dataset.lower().replace("_", "-")
    d = "brats2020" if d == "brats" else d
    t = TASK_ALIASES.get(task.lower(), task.lower())
    if spec.kind == "fid":
        from .fid import resolve_fid_weights

        resolve_fid_weights(fid_weights)
    if out is not None:
        from ..io.atomic import check_output

        check_output(out, overwrite)
    data = TrainingData([data_dir], split=split)
    need = (*spec.sources, spec.target)
    records = data.require(*need, purpose=f"evaluating {d} {spec.setting}")
    if limit:
        records = records[:limit]
    if predictor is None:
        if weights is None:
            raise ConfigError("model evaluation needs --weights MODEL", "pass the trained model folder")
        predictor, image_size = engine_predictor(Path(weights), device=device, steps=steps, seed=seed)
    size = image_size or 64

    preds: list[Any] = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        sources: dict[str, Any] = {}
        for key in spec.sources:
            if key == "text":
                sources[key] = [r.text or "" for r in batch]
            else:
                import torch

                sources[key] = torch.stack([load_image(r, key, size) for r in batch])
        out_b = predictor(spec.target, sources)
        preds += list(out_b) if isinstance(out_b, list) else [x for x in out_b]

    if spec.kind == "text":
        pred = {r.id: str(p) for r, p in zip(records, preds, strict=True)}
        ref = {r.id: r.text or "" for r in records}
        report = evaluate_predictions(pred, ref, kind="text", dataset=d, task=t, setting=spec.setting)
    else:
        refs = [load_image(r, spec.target, size)[0].numpy().astype(np.float64) for r in records]
        gens = [np.asarray(p, dtype=np.float64).reshape(refs[0].shape) for p in preds]
        if spec.kind == "image":
            report = _score_slices(records, gens, refs, spec, d, t)
        else:
            report = _score_fid(gens, refs, spec, d, t, fid_weights)
    report.summary.update({"split": split, "data": str(data_dir), "weights": str(weights) if weights else None})
    if out is not None:
        from .tables import write_results

        write_results(out, report.summary, report.per_case, report.markdown, overwrite=overwrite)
    return report


def _to_units(x: np.ndarray, modality: str) -> np.ndarray:
    """Model range [-1, 1] back to [0, 1] (CT: back to HU through the model window)."""
    from ..modalities import CT_WINDOWS

    u = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
    if modality == "ct":
        lo, hi = CT_WINDOWS["model"]
        return lo + u * (hi - lo)
    return u


def _score_slices(records: Sequence[Any], gens: list[np.ndarray], refs: list[np.ndarray], spec: EvalSpec,
                  dataset: str, task: str) -> EvalReport:
    from ..modalities import split_target

    modality = split_target(spec.target)[0]
    by_subject: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for r, g, f in sorted(zip(records, gens, refs, strict=True), key=lambda x: (x[0].subject or x[0].id, x[0].id)):
        p, q = by_subject.setdefault(r.subject or r.id, ([], []))
        p.append(_to_units(g, modality))
        q.append(_to_units(f, modality))
    if not by_subject:
        raise DataError("no samples to evaluate", "check --split and the prepared folder")
    pred = {k: np.stack(v[0]) for k, v in by_subject.items()}
    ref = {k: np.stack(v[1]) for k, v in by_subject.items()}
    return evaluate_predictions(pred, ref, kind="image", dataset=dataset, task=task, setting=spec.setting,
                                modality=modality, mask=spec.mask)


def _score_fid(gens: list[np.ndarray], refs: list[np.ndarray], spec: EvalSpec, dataset: str, task: str,
               fid_weights: Path | None) -> EvalReport:
    from PIL import Image

    from .fid import compute_fid

    with tempfile.TemporaryDirectory(prefix="medm2g-fid-") as tmp:
        gdir, rdir = Path(tmp) / "generated", Path(tmp) / "reference"
        gdir.mkdir()
        rdir.mkdir()
        for i, (g, f) in enumerate(zip(gens, refs, strict=True)):
            # identical windowing for both sets: model range [-1, 1] -> 8-bit
            for arr, folder in ((g, gdir), (f, rdir)):
                u8 = np.round((np.clip(arr, -1, 1) + 1) / 2 * 255).astype(np.uint8)
                Image.fromarray(u8).save(folder / f"{i:06d}.png")
        res = compute_fid(gdir, rdir, fid_weights)
    return fid_report(res, dataset=dataset, task=task, setting=spec.setting)
