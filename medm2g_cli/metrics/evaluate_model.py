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
from .protocols import CT_HU_RANGE, PROTOCOLS, ImageEvaluation, evaluate_pair, protocol_settings
from .specs import EVAL_SPECS, KNOWN_DATASETS, TASK_ALIASES, EvalSpec, get_spec, resolve_dataset  # noqa: F401  (re-exported)
from .tables import result_table, results_markdown
from .text import TextEvaluation, evaluate_texts


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
                         hu_range: tuple[float, float] = CT_HU_RANGE, label: str = "medm2g",
                         meteor: bool = True) -> EvalReport:
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
        tev = evaluate_texts({k: str(v) for k, v in pred.items()}, {k: str(v) for k, v in ref.items()},
                             dataset=dataset or "iu-xray", meteor=meteor)
        return text_report(tev, task=task, label=label)
    if kind != "image":
        raise ConfigError(f"unknown evaluation kind '{kind}'", "use image or text")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'", f"use one of: {', '.join(PROTOCOLS)}")
    arrays = {k: (np.asarray(pred[k], dtype=np.float64), np.asarray(ref[k], dtype=np.float64)) for k in sorted(ref)}
    bad = [f"{k}: {'x'.join(map(str, a.shape))} vs {'x'.join(map(str, b.shape))}"
           for k, (a, b) in arrays.items() if a.shape != b.shape]
    if bad:
        raise InputError(f"prediction and reference shapes differ for {len(bad)} case(s): {'; '.join(bad[:5])}"
                         + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""), "score the same slices on both sides")
    cases = [evaluate_pair(k, a, b, protocol=protocol, modality=modality, mask=mask, hu_range=hu_range)
             for k, (a, b) in arrays.items()]
    ev = ImageEvaluation(protocol=protocol, modality=modality, mask=mask, cases=cases,
                         settings=protocol_settings(protocol, modality, mask, hu_range))
    return image_report(ev, dataset=dataset, task=task, setting=setting, label=label)


# ------------------------------------------------------------------------------- model evaluation

Predictor = Callable[..., Any]
"""``predict(target, sources, seed=...)``: ``sources`` map a key (``t1``, ``xray``, ``text``...) to a
batch — a tensor [B, 1, H, W] in [-1, 1] or a list of B reports; returns the target batch likewise
(images [B, 1, h, w] in [-1, 1], or B reports). Row ``i`` of the batch is drawn with seed ``seed + i``."""

@dataclass
class _Sample:
    """One usable manifest record of the evaluated split."""

    id: str
    subject: str
    order: tuple[int, str]
    files: dict[str, str]
    text: str | None
    meta: dict[str, Any]


def engine_predictor(weights: Path, *, device: str = "cpu", steps: int | None = None, guidance: float | None = None,
                     sampler: str | None = None, needed: Sequence[str] = (),
                     max_length: int | None = None) -> tuple[Predictor, int]:
    """A :data:`Predictor` backed by the MedM2G engine (loaded as ``medm2g translate`` loads it), and
    the model's image size. ``needed`` branches are checked from ``medm2g.json`` before any weight is read."""
    from ..config import SampleConfig
    from ..engine.model import Condition
    from ..engine.sampling import generate
    from ..inference import runtime

    path = runtime.resolve_weights(weights)
    runtime.check_branches(path, needed)
    import torch

    # fp32 throughout: the paper-protocol numbers stay comparable and independent of the slice batch
    model = runtime.load_model(path, runtime.select_device(device), precision="fp32")
    base = SampleConfig()
    if steps is not None:
        base.steps = steps
    if guidance is not None:
        base.guidance = guidance
    if sampler is not None:
        base.sampler = sampler  # type: ignore[assignment]
    base.validate()

    def predict(target: str, sources: dict[str, Any], seed: int = 0) -> Any:
        conds = [Condition(k, v.to(model.device) if hasattr(v, "to") else v) for k, v in sources.items()]
        sample = SampleConfig(steps=base.steps, eta=base.eta, guidance=base.guidance, sampler=base.sampler, seed=seed)
        with torch.inference_mode():
            out = generate(model, target, conds, sample=sample, max_length=max_length)
        return out if isinstance(out, list) else out.detach().float().cpu()

    return predict, int(model.image_size)


def _resolve_dataset(dataset: str | None, task: str, info: dict[str, Any], keys: set[str],
                     target: str | None = None) -> tuple[str, EvalSpec, list[str]]:
    """The dataset whose protocol and published rows apply, its spec (``target``: another reported
    direction), and notes; see :func:`medm2g_cli.metrics.specs.resolve_dataset`."""
    d, notes = resolve_dataset(dataset, task, str(info.get("name") or ""), keys)
    return d, get_spec(d, task, target), notes


def report_length(dataset: str) -> int | None:
    """Decoded report length of ``dataset`` (supplement C.1: 45 IU X-ray, 50 MIMIC-CXR), from the
    report-generation preset, so evaluation decodes what fine-tuning trained."""
    from ..training.tasks import resolve_task

    return resolve_task("report-generation", dataset).max_report_length


def _needed(spec: EvalSpec) -> tuple[str, ...]:
    return spec.needed


def _file_key(files: dict[str, str], key: str) -> str | None:
    """The manifest file entry for ``key``: itself, or for ``mri`` the first MRI contrast present."""
    from ..modalities import MRI_CONTRASTS

    if key in files:
        return key
    if key == "mri":
        return next((c for c in MRI_CONTRASTS if c in files), None)
    return None


def _has(rec: dict[str, Any], key: str) -> bool:
    if key == "text":
        return bool(rec.get("text"))
    return _file_key(rec.get("files") or {}, key) is not None


def _available(samples: Sequence[dict[str, Any]]) -> set[str]:
    keys: set[str] = set()
    for r in samples:
        keys |= set(r.get("files") or {})
        if r.get("text"):
            keys.add("text")
    return keys


def load_split(data_dir: Path, split: str, spec: EvalSpec,
               max_subjects: int | None = None) -> tuple[dict[str, Any], dict[str, list[_Sample]], list[str]]:
    """The split's samples that hold every key of ``spec``, grouped by subject (slices in order).

    Returns ``(dataset.json, {subject: samples}, notes)``; subjects are sorted, and ``max_subjects``
    keeps the first ones. A split without such samples stops with one line naming what it has.
    """
    from ..data.manifest import SPLITS, load_manifest

    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'", f"use one of: {', '.join(SPLITS)}")
    info, samples = load_manifest(data_dir)
    in_split = [r for r in samples if r["split"] == split]
    if not in_split:
        counts = {sp: sum(1 for r in samples if r["split"] == sp) for sp in SPLITS}
        raise DataError(f"the {split} split of '{data_dir}' is empty (samples per split: "
                        + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")", "choose another --split")
    need = _needed(spec)
    usable = [r for r in in_split if all(_has(r, k) for k in need)]
    if not usable:
        raise DataError(f"evaluating {spec.setting} needs {' + '.join(need)} in the {split} split, but "
                        f"'{data_dir}' has only: {', '.join(sorted(_available(in_split))) or 'nothing'}",
                        "pass a prepared folder with those modalities (or another --dataset/--task)")
    notes: list[str] = []
    if len(usable) < len(in_split):
        notes.append(f"{len(in_split) - len(usable)} of {len(in_split)} {split} samples lack "
                     f"{' or '.join(need)} and were skipped")
    groups: dict[str, list[_Sample]] = {}
    for r in usable:
        raw_meta = r.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        idx = meta.get("slice")
        order = (int(idx) if isinstance(idx, (int, float)) else 0, r["id"])
        groups.setdefault(r["subject"], []).append(
            _Sample(r["id"], r["subject"], order, dict(r.get("files") or {}), r.get("text"), meta))
    subjects = sorted(groups)
    if max_subjects is not None:
        if max_subjects < 1:
            raise ConfigError(f"--max-subjects {max_subjects} is not positive", "use 1 or more")
        if len(subjects) > max_subjects:
            notes.append(f"max_subjects {max_subjects}: the first {max_subjects} of {len(subjects)} subjects "
                         "(sorted) were scored")
            subjects = subjects[:max_subjects]
    return info, {s: sorted(groups[s], key=lambda x: x.order) for s in subjects}, notes


def _units(sample: _Sample, key: str, info: dict[str, Any]) -> tuple[Any, str]:
    """The map from the model range back to the units of ``key`` for one sample, and its description.

    ``meta.intensity[key]`` (written by ``medm2g prepare``) first; else the folder's fixed window
    for the modality (CT); else [0, 1].
    """
    from ..data.transforms import Normalisation
    from ..modalities import CT_WINDOWS, split_target

    mod = split_target(key)[0] if key != "text" else "text"
    d = (sample.meta.get("intensity") or {}).get(_file_key(sample.files, key) or key)
    if isinstance(d, dict) and "low" in d and "high" in d:
        return Normalisation(str(d.get("modality", mod)), float(d["low"]), float(d["high"])), "meta.intensity of each sample"
    pre = ((info.get("preprocessing") or {}).get("intensity") or {}) if isinstance(info.get("preprocessing"), dict) else {}
    w = pre.get(mod) if isinstance(pre, dict) else None
    if isinstance(w, dict) and w.get("mode") == "window" and "low" in w and "high" in w:
        return Normalisation(mod, float(w["low"]), float(w["high"])), "dataset.json preprocessing window"
    if mod == "ct":
        lo, hi = CT_WINDOWS["model"]
        return Normalisation("ct", lo, hi), f"the model CT window {lo:g}..{hi:g} HU (no intensity recorded)"
    return Normalisation(mod, 0.0, 1.0), "[-1, 1] -> [0, 1] (no intensity recorded)"


def _to_model(arrs: list[np.ndarray], size: int) -> Any:
    """Slices [-1, 1] -> tensor [B, 1, size, size] (antialiased bilinear when the sizes differ)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    t = torch.from_numpy(np.stack(arrs).astype(np.float32))[:, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp(-1.0, 1.0)


def _from_model(t: Any, shape: tuple[int, int]) -> np.ndarray:
    """Generated batch [B, 1, h, w] -> numpy [B, H, W] on the reference grid (bilinear when they differ)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    x = torch.as_tensor(t, dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if tuple(x.shape[-2:]) != tuple(shape):
        x = F.interpolate(x, size=shape, mode="bilinear", antialias=x.shape[-1] > shape[-1], align_corners=False)
    return x[:, 0].numpy().astype(np.float64)


def evaluate_prepared(data_dir: str | Path, weights: str | Path | None, task: str, split: str = "test",
                      steps: int | None = None, max_subjects: int | None = None, out: str | Path | None = None, *,
                      dataset: str | None = None, device: str = "cpu", seed: int = 0, batch_size: int = 8,
                      guidance: float | None = None, sampler: str | None = None, fid_weights: str | Path | None = None,
                      overwrite: bool = False, meteor: bool = True, predictor: Predictor | None = None,
                      image_size: int | None = None, target: str | None = None) -> EvalReport:
    """Run a model on one split of a prepared folder and score it the way the supplement's tables do.

    ``data_dir``: a folder from ``medm2g prepare``/``phantom`` (``dataset.json`` + ``samples.jsonl``
    + slices in [-1, 1]). ``task``: ``mri-synthesis``, ``mri-ct-translation``, ``report-generation``,
    ``image-generation`` or ``xray-generation``; the direction is the dataset's default
    (:data:`EVAL_SPECS`, e.g. IXI T2+T1→PD). ``dataset`` picks the protocol and the published rows;
    by default the folder's own name, or for phantom folders the first dataset the data can feed.

    Images: every usable slice of the split is generated from its sources (slice ``i`` with seed
    ``seed + i``: independent of ``batch_size``), mapped back to physical units with the reference's
    ``meta.intensity`` (HU for CT; the same map for prediction and reference), stacked per subject
    and scored with the default protocol — PSNR and Gaussian SSIM per slice, averaged per subject,
    mean ± std across subjects (SSIM in %); CT adds MAE in HU inside the body mask. Reports:
    generated from the X-ray and scored with the R2Gen protocol. FID tasks: both sets windowed
    identically to 8-bit PNG and compared with the FID Inception (``fid_weights`` checked first).

    ``out``: a new folder for ``summary.json``, ``per_case.csv`` and ``results.md`` (checked before
    any work; ``overwrite`` to replace). ``meteor=False`` skips METEOR (it starts a Java process).
    ``predictor`` replaces the engine (other back-ends, tests); ``weights`` may then be None. Returns the :class:`EvalReport` (``.summary``, ``.per_case``,
    ``.markdown``, ``.headers``/``.rows`` for a table).
    """
    import time

    from ..data.manifest import load_manifest, load_slice

    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    info, all_samples = load_manifest(data_dir)
    d, spec, notes = _resolve_dataset(dataset, task, info, _available([r for r in all_samples if r["split"] == split]),
                                      target)
    t = TASK_ALIASES.get(task.lower(), task.lower())
    if spec.kind == "fid":
        from .fid import resolve_fid_weights

        resolve_fid_weights(fid_weights)
    if out is not None:
        from ..io.atomic import check_output

        check_output(out, overwrite, inputs=[data_dir])
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} is not positive", "use 1 or more")
    info, groups, more_notes = load_split(data_dir, split, spec, max_subjects)
    notes += more_notes
    if predictor is None:
        if weights is None:
            raise ConfigError("model evaluation needs --weights MODEL", "pass the trained model folder")
        predictor, image_size = engine_predictor(Path(weights), device=device, steps=steps, guidance=guidance,
                                                 sampler=sampler, needed=_needed(spec),
                                                 max_length=report_length(d) if spec.kind == "text" else None)
    size = int(image_size or 64)
    flat = [s for subj in groups for s in groups[subj]]

    def image(s: _Sample, key: str) -> np.ndarray:
        return load_slice(data_dir, s.files[_file_key(s.files, key) or key])

    refs: list[Any] = [s.text or "" for s in flat] if spec.kind == "text" else [image(s, spec.target) for s in flat]
    if spec.kind != "text":
        shapes = sorted({r.shape for r in refs})
        if len(shapes) > 1 and spec.kind == "image":
            by = {s.subject: refs[i].shape for i, s in enumerate(flat)}
            raise DataError(f"reference slices of the {split} split differ in size ({', '.join(f'{a}x{b}' for a, b in shapes)}; "
                            f"e.g. {', '.join(f'{k}: {v[0]}x{v[1]}' for k, v in list(by.items())[:4])})",
                            "re-run medm2g prepare with one --size")
    preds: list[Any] = []
    t1 = time.perf_counter()
    for start in range(0, len(flat), batch_size):
        batch = flat[start : start + batch_size]
        sources: dict[str, Any] = {}
        for key in spec.sources:
            sources[key] = [s.text or "" for s in batch] if key == "text" else _to_model([image(s, key) for s in batch], size)
        got = predictor(spec.target, sources, seed=seed + start)
        if isinstance(got, list):
            preds += [str(x) for x in got]
        else:
            arr = _from_model(got, refs[start].shape)
            preds += list(arr)
        if len(preds) != start + len(batch):
            raise DataError(f"the model returned {len(preds) - start} outputs for {len(batch)} inputs",
                            "check the weights (one output per input row is expected)")
    t_model = time.perf_counter() - t1

    if spec.kind == "text":
        report = evaluate_predictions({s.id: p for s, p in zip(flat, preds, strict=True)},
                                      {s.id: r for s, r in zip(flat, refs, strict=True)},
                                      kind="text", dataset=d if d in ("iu-xray", "mimic-cxr") else "iu-xray",
                                      task=t, setting=spec.setting, meteor=meteor)
    elif spec.kind == "image":
        from ..modalities import split_target

        modality = split_target(spec.target)[0]
        pred: dict[str, list[np.ndarray]] = {}
        ref: dict[str, list[np.ndarray]] = {}
        how: set[str] = set()
        for s, p, r in zip(flat, preds, refs, strict=True):
            scale, desc = _units(s, spec.target, info)
            how.add(desc)
            pred.setdefault(s.subject, []).append(scale.inverse(p, clip=True).astype(np.float64))
            ref.setdefault(s.subject, []).append(scale.inverse(r, clip=True).astype(np.float64))
        units = "HU" if modality == "ct" else "physical (prepared intensity scale)"
        report = evaluate_predictions({k: np.stack(v) for k, v in pred.items()}, {k: np.stack(v) for k, v in ref.items()},
                                      kind="image", dataset=d, task=t, setting=spec.setting, modality=modality,
                                      mask=spec.mask)
        report.summary.setdefault("settings", {})["units"] = (
            f"prediction and reference mapped from [-1, 1] back to {units} with the reference's scale "
            f"({'; '.join(sorted(how))})")
    else:
        report = _score_fid(preds, refs, spec, d, t, fid_weights)
    report.summary.update({
        "dataset": d, "task": t, "setting": spec.setting, "split": split, "data": str(data_dir),
        "prepared_name": info.get("name"), "weights": str(weights) if weights is not None else None,
        "direction": {"target": spec.target, "sources": list(spec.sources)},
        "n_samples": len(flat), "model_image_size": size,
        "prepared_size": (info.get("preprocessing") or {}).get("size") if isinstance(info.get("preprocessing"), dict) else None,
        "sampler": {"steps": steps, "guidance": guidance, "sampler": sampler, "seed": seed,
                    "note": "None = the engine default (DDIM, 50 steps, guidance 2.0, Table A3)"},
        "seconds": {"model": round(t_model, 3), "total": round(time.perf_counter() - t0, 3)},
    })
    if info.get("split_scaled"):
        notes.append("the folder's split was scaled down from the paper's rule (fewer subjects than the paper used)")
    if notes:
        report.summary["notes"] = list(report.summary.get("notes") or []) + notes
        report.markdown = results_markdown(report.title, report.summary, dataset=d, task=t, setting=spec.setting)
    if out is not None:
        from .tables import write_results

        write_results(Path(out), report.summary, report.per_case, report.markdown, overwrite=overwrite)
    return report


def run_model_eval(dataset: str | None, task: str, data_dir: Path, weights: Path | None, split: str = "test",
                   out: Path | None = None, **kwargs: Any) -> EvalReport:
    """``medm2g eval``: :func:`evaluate_prepared` with the dataset first (kept for the command)."""
    return evaluate_prepared(data_dir, weights, task, split, out=out, dataset=dataset, **kwargs)


def _score_fid(gens: list[np.ndarray], refs: list[np.ndarray], spec: EvalSpec, dataset: str, task: str,
               fid_weights: str | Path | None) -> EvalReport:
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
