"""``medm2g demo``: the whole toolkit on held-out phantom subjects, with pictures, metrics and baselines.

The demo generates phantom subjects from a seed the demo weights never saw, runs the real commands'
API (``translate mri2ct``, ``synthesize t1+t2 -> pd``, ``generate xray``, ``report``, ``eval``) and
measures each against a simple baseline computed in the same run:

- MRI -> CT: MAE in HU inside the head vs the best *global* intensity mapping MRI -> HU (per-bin
  median of HU given the normalised T1 value, the MAE-optimal global map) fitted on training subjects;
- T1 + T2 -> PD: PSNR vs copying the closest input contrast, and a fitted global mapping
  (T1, T2) -> PD reported beside it;
- report generation: macro-F1 of the findings named in the generated reports (the phantom's finding
  vocabulary) vs the majority-class baseline of the training cohort;
- text -> X-ray: the finding asked for in the prompt recovered from the generated image by the
  aligned encoders (retrieval among the finding classes) vs chance.

Everything lands in one folder (written atomically): ``index.html``, ``metrics.json``, the
figures and the raw outputs.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

# Seeds: the demo weights were trained on cohorts made with seed 1000 (examples/train_demo_weights.sh).
TRAIN_SEED = 1000
HELD_OUT_SEED = 424242
CHEST_CLASSES: tuple[str, ...] = ("none", "cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation", "nodule")

Step = Callable[[str], None]


@dataclass
class DemoSettings:
    """What the demo runs (defaults finish in a few minutes on 2 CPU cores with the demo weights)."""

    out: Path
    weights: Path | None = None
    brain_subjects: int = 1
    train_subjects: int = 3  # training subjects regenerated to fit the baselines
    chest_studies: int = 30
    images_per_finding: int = 8  # 48 images: 4 per finding left the retrieval check at 5 of 24 vs 4 by chance
    steps: int | None = 25  # DDIM steps (25 keeps `make demo` within minutes on 2 CPU cores at 128 px)
    samples: int = 2  # translate/synthesize draws (mean + uncertainty map)
    device: str = "auto"
    seed: int = HELD_OUT_SEED
    overwrite: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse settings that cannot give a meaningful demo."""
        if self.brain_subjects < 1 or self.train_subjects < 1 or self.chest_studies < 2 or self.images_per_finding < 1:
            raise ConfigError("the demo needs at least 1 brain subject, 2 chest studies and 1 image per finding",
                              "raise --brain-subjects / --chest-studies")
        if self.seed == TRAIN_SEED:
            raise ConfigError(f"seed {TRAIN_SEED} is the training seed of the demo weights", "choose another --seed")
        if self.samples < 1:
            raise ConfigError("--samples must be at least 1", "use 1 or more")


# -- baselines ------------------------------------------------------------------------------------------


class GlobalMap:
    """A global intensity mapping: normalised input value(s) -> target, by per-bin statistics.

    One input: 128 bins over [-1, 1] with the per-bin median (the MAE-optimal global map); two
    inputs: a 32 x 32 grid with the per-cell mean (the MSE/PSNR-optimal one). Empty bins take the
    nearest filled bin's value.
    """

    def __init__(self, bins: int, stat: str) -> None:
        self.bins, self.stat = bins, stat
        self.table: np.ndarray | None = None

    def _index(self, xs: list[np.ndarray]) -> np.ndarray:
        idx = [np.clip(((x + 1.0) / 2.0 * self.bins).astype(np.int64), 0, self.bins - 1) for x in xs]
        flat = idx[0]
        for i in idx[1:]:
            flat = flat * self.bins + i
        return flat

    def fit(self, xs: list[np.ndarray], y: np.ndarray) -> GlobalMap:
        """Fit on flattened normalised inputs ``xs`` and targets ``y``."""
        n = self.bins ** len(xs)
        flat = self._index(xs)
        table = np.full(n, np.nan, dtype=np.float64)
        order = np.argsort(flat, kind="stable")
        fs, ys = flat[order], y[order]
        starts = np.flatnonzero(np.r_[True, fs[1:] != fs[:-1]])
        ends = np.r_[starts[1:], fs.size]
        for s, e in zip(starts, ends, strict=True):
            v = ys[s:e]
            table[fs[s]] = float(np.median(v)) if self.stat == "median" else float(v.mean())
        filled = np.flatnonzero(~np.isnan(table))
        if filled.size == 0:
            raise ConfigError("no training voxels to fit the baseline", "check the phantom cohort")
        empty = np.flatnonzero(np.isnan(table))
        if empty.size:
            nearest = filled[np.abs(empty[:, None] - filled[None, :]).argmin(axis=1)]
            table[empty] = table[nearest]
        self.table = table
        return self

    def __call__(self, xs: list[np.ndarray]) -> np.ndarray:
        assert self.table is not None
        return self.table[self._index(xs)].astype(np.float32)


def _norm(arr: np.ndarray, modality: str) -> np.ndarray:
    from .data.transforms import normalisation_for

    return normalisation_for(np.asarray(arr, np.float32), modality).forward(np.asarray(arr, np.float32))


def mae_hu(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error in HU inside ``mask``."""
    return float(np.abs(pred[mask] - ref[mask]).mean())


def psnr_volume(pred: np.ndarray, ref: np.ndarray, mask_slices: np.ndarray) -> float:
    """PSNR with the default protocol (negatives clipped, each volume / its max, data range 1),
    per axial slice over ``mask_slices`` then averaged (the subject's value)."""
    from .metrics.image import psnr_slices

    p = np.clip(pred.astype(np.float64), 0, None)
    r = np.clip(ref.astype(np.float64), 0, None)
    p = p / max(float(p.max()), 1e-12)
    r = r / max(float(r.max()), 1e-12)
    ks = np.flatnonzero(mask_slices)
    return float(np.mean(psnr_slices(np.moveaxis(p[:, :, ks], 2, 0), np.moveaxis(r[:, :, ks], 2, 0), 1.0)))


def macro_f1(truth: list[set[str]], pred: list[set[str]], classes: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Macro-averaged F1 over ``classes`` (F1 = 0 for a class neither predicted nor present... counted as 0,
    as sklearn does with ``zero_division=0``)."""
    per: dict[str, float] = {}
    for c in classes:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if c in t and c in p)
        fp = sum(1 for t, p in zip(truth, pred, strict=True) if c not in t and c in p)
        fn = sum(1 for t, p in zip(truth, pred, strict=True) if c in t and c not in p)
        per[c] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return float(np.mean(list(per.values()))), per


def _label_set(names: list[str] | set[str]) -> set[str]:
    s = set(names)
    return s if s else {"none"}


# -- the demo -----------------------------------------------------------------------------------------


def run_demo(settings: DemoSettings, step: Step = lambda _: None) -> dict[str, Any]:
    """Run the demo into ``settings.out`` (atomically); returns the metrics (also in metrics.json)."""
    from .inference.runtime import InferenceSettings, resolve_weights
    from .io.atomic import atomic_dir, check_output

    settings.validate()
    weights = resolve_weights(settings.weights)
    check_output(settings.out, settings.overwrite)
    # DDIM named explicitly: the demo's numbers stay comparable across rounds, whatever the model's
    # medm2g.json recommends (naming a sampler opts out of the model's sampling block).
    inf = InferenceSettings(weights=weights, device=settings.device, sampler="ddim", steps=settings.steps, seed=0)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {"weights": str(weights), "held_out_seed": settings.seed, "train_seed": TRAIN_SEED,
                               "settings": {k: (str(v) if isinstance(v, Path) else v)
                                            for k, v in asdict(settings).items() if k != "timings"}}
    with atomic_dir(settings.out, overwrite=settings.overwrite) as tmp:
        (tmp / "img").mkdir()
        cohort = _cohorts(tmp, settings, step)
        model = _model(weights)  # for the autoencoder-alone floors of both brain tasks
        metrics["mri2ct"] = _translate(tmp, cohort, inf, model, settings, step)
        metrics["synthesis"] = _synthesize(tmp, cohort, inf, model, settings, step)
        metrics["xray_generation"] = _generate(tmp, inf, settings, step)
        metrics["report"] = _report(tmp, cohort, inf, settings, step)
        metrics["eval"] = _evaluate(tmp, cohort, weights, settings, step)
        metrics["checks"] = {
            "mri2ct_beats_global_map": metrics["mri2ct"]["model_mae_hu"] < metrics["mri2ct"]["global_map_mae_hu"],
            "synthesis_beats_copy": metrics["synthesis"]["model_psnr"] > metrics["synthesis"]["copy_psnr"],
            "report_beats_majority": metrics["report"]["model_macro_f1"] > metrics["report"]["majority_macro_f1"],
            "xray_prompt_recovered_above_chance": metrics["xray_generation"]["retrieval_accuracy"]
            > metrics["xray_generation"]["chance"],
        }
        metrics["passed"] = all(metrics["checks"].values())
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "index.html").write_text(_html(metrics), encoding="utf-8")
        # the working data (volumes) stays out of the result folder's top level but is kept for inspection
    return metrics


@dataclass
class _Cohort:
    brain: Path
    train_brain: Path
    chest: Path
    train_chest: Path
    brain_ids: list[str]


def _cohorts(tmp: Path, s: DemoSettings, step: Step) -> _Cohort:
    from .data.phantom import write_brain_cohort, write_chest_cohort

    step(f"phantoms: {s.brain_subjects} held-out brain subjects, {s.chest_studies} chest studies (seed {s.seed})")
    data = tmp / "data"
    data.mkdir()
    t = time.perf_counter()
    write_brain_cohort(data / "brain", s.brain_subjects, seed=s.seed, resolution=2, layout="plain", tumour_rate=0.5)
    write_brain_cohort(data / "train-brain", s.train_subjects, seed=TRAIN_SEED, resolution=2, layout="plain",
                       tumour_rate=0.5)
    write_chest_cohort(data / "chest", s.chest_studies, seed=s.seed, layout="plain", split=(0.0, 0.0, 1.0))
    write_chest_cohort(data / "train-chest", 100, seed=TRAIN_SEED, layout="plain")
    s.timings["phantoms_s"] = round(time.perf_counter() - t, 1)
    ids = sorted(p.name for p in (data / "brain").glob("sub-*"))
    return _Cohort(data / "brain", data / "train-brain", data / "chest", data / "train-chest", ids)


def _load(path: Path) -> np.ndarray:
    from .io import read_volume

    return np.asarray(read_volume(path).array, dtype=np.float32)


def autoencoder_roundtrip(model: Any, arr: np.ndarray, modality: str, batch: int = 16) -> np.ndarray:
    """decode(encode(volume)) slice by slice, as the pipelines see it (same normalisation and slice
    geometry): the best any latent diffusion with this autoencoder can reach on ``arr``."""
    import torch

    from .data.transforms import SliceGeometry, normalisation_for

    norm = normalisation_for(arr, modality)
    sl = np.moveaxis(norm.forward(arr), 2, 0)
    geo = SliceGeometry(sl.shape[1], sl.shape[2], model.image_size)
    out = np.empty_like(sl)
    with torch.inference_mode():
        for i in range(0, len(sl), batch):
            z = model.encode_image(modality, geo.to_model(sl[i:i + batch]))
            out[i:i + batch] = geo.from_model(model.decode_image(modality, z))
    return np.asarray(norm.inverse(np.moveaxis(out, 0, 2)), dtype=np.float32)


def _model(weights: Path) -> Any:
    from .engine import MedM2G

    return MedM2G.from_pretrained(weights).eval()


def _translate(tmp: Path, c: _Cohort, inf: Any, model: Any, s: DemoSettings, step: Step) -> dict[str, Any]:
    from . import api

    step("translate mri2ct on held-out subjects (model vs global MRI->HU map fitted on training subjects)")
    t = time.perf_counter()
    xs, ys = [], []
    for sub in sorted(p.name for p in c.train_brain.glob("sub-*")):
        d = c.train_brain / sub
        head = _load(d / "labels.nii.gz") > 0
        xs.append(_norm(_load(d / "t1.nii.gz"), "mri")[head])
        ys.append(_load(d / "ct.nii.gz")[head])
    gmap = GlobalMap(128, "median").fit([np.concatenate(xs)], np.concatenate(ys))
    out = tmp / "translate"
    out.mkdir()
    rows = []
    for sub in c.brain_ids:
        d = c.brain / sub
        api.translate_path("mri2ct", d / "t1.nii.gz", out / f"{sub}_ct.nii.gz", settings=inf, samples=s.samples)
        pred = _load(out / f"{sub}_ct.nii.gz")
        ref = _load(d / "ct.nii.gz")
        t1 = _load(d / "t1.nii.gz")
        head = _load(d / "labels.nii.gz") > 0
        base = gmap([_norm(t1, "mri")])
        std = _load(out / f"{sub}_ct_std.nii.gz") if s.samples > 1 else None
        ceiling = mae_hu(autoencoder_roundtrip(model, ref, "ct"), ref, head)
        rows.append({"subject": sub, "model_mae_hu": mae_hu(pred, ref, head), "global_map_mae_hu": mae_hu(base, ref, head),
                     "autoencoder_mae_hu": ceiling})
        _figure(tmp / "img" / f"mri2ct_{sub}.png", [("T1 input", t1, "mri"), ("CT output", pred, "ct"),
                                                     ("CT truth", ref, "ct"), ("|error| HU", np.abs(pred - ref), "err"),
                                                     ("uncertainty", std, "std")], head)
    s.timings["translate_s"] = round(time.perf_counter() - t, 1)
    return {"subjects": rows, "model_mae_hu": float(np.mean([r["model_mae_hu"] for r in rows])),
            "global_map_mae_hu": float(np.mean([r["global_map_mae_hu"] for r in rows])),
            "autoencoder_mae_hu": float(np.mean([r["autoencoder_mae_hu"] for r in rows])),
            "autoencoder": "the CT truth through the CT autoencoder alone (encode, decode): the floor of any output",
            "baseline": f"per-bin median HU given normalised T1 (128 bins), fitted on {s.train_subjects} training subjects",
            "mask": "head (phantom label map > 0)"}


def _synthesize(tmp: Path, c: _Cohort, inf: Any, model: Any, s: DemoSettings, step: Step) -> dict[str, Any]:
    from . import api

    step("synthesize T1 + T2 -> PD (model vs copying the closest input, and a fitted global map)")
    t = time.perf_counter()
    x1, x2, ys = [], [], []
    for sub in sorted(p.name for p in c.train_brain.glob("sub-*")):
        d = c.train_brain / sub
        head = _load(d / "labels.nii.gz") > 0
        pd = _load(d / "pd.nii.gz")
        x1.append(_norm(_load(d / "t1.nii.gz"), "mri")[head])
        x2.append(_norm(_load(d / "t2.nii.gz"), "mri")[head])
        ys.append(_norm(pd, "mri")[head])
    gmap = GlobalMap(32, "mean").fit([np.concatenate(x1), np.concatenate(x2)], np.concatenate(ys))
    out = tmp / "synthesize"
    out.mkdir()
    rows = []
    for sub in c.brain_ids:
        d = c.brain / sub
        api.synthesize([("t1", d / "t1.nii.gz", None), ("t2", d / "t2.nii.gz", None)], "pd", out / f"{sub}_pd.nii.gz",
                       settings=inf, samples=s.samples)
        pred = _load(out / f"{sub}_pd.nii.gz")
        ref = _load(d / "pd.nii.gz")
        t1, t2 = _load(d / "t1.nii.gz"), _load(d / "t2.nii.gz")
        labels = _load(d / "labels.nii.gz")
        head = labels > 0
        brain_slices = np.asarray(np.isin(np.rint(labels), (2, 3, 6, 7, 8)).any(axis=(0, 1)))
        base = np.where(head, gmap([_norm(t1, "mri"), _norm(t2, "mri")]), -1.0)
        copies = {"t1": psnr_volume(t1, ref, brain_slices), "t2": psnr_volume(t2, ref, brain_slices)}
        closest = max(copies, key=lambda k: copies[k])
        std = _load(out / f"{sub}_pd_std.nii.gz") if s.samples > 1 else None
        rows.append({"subject": sub, "model_psnr": psnr_volume(pred, ref, brain_slices), "copy_psnr": copies[closest],
                     "copied": closest, "global_map_psnr": psnr_volume(base + 1.0, ref, brain_slices),
                     "autoencoder_psnr": psnr_volume(autoencoder_roundtrip(model, ref, "mri"), ref, brain_slices)})
        err = np.abs(pred / max(float(pred.max()), 1e-6) - ref / max(float(ref.max()), 1e-6))
        _figure(tmp / "img" / f"synth_{sub}.png", [("T1", t1, "mri"), ("T2", t2, "mri"), ("PD output", pred, "mri"),
                                                    ("PD truth", ref, "mri"), ("|error| (/max)", err, "err"),
                                                    ("uncertainty", std, "std")], head)
    s.timings["synthesize_s"] = round(time.perf_counter() - t, 1)
    return {"subjects": rows, "model_psnr": float(np.mean([r["model_psnr"] for r in rows])),
            "copy_psnr": float(np.mean([r["copy_psnr"] for r in rows])),
            "global_map_psnr": float(np.mean([r["global_map_psnr"] for r in rows])),
            "autoencoder_psnr": float(np.mean([r["autoencoder_psnr"] for r in rows])),
            "protocol": "default: negatives clipped, volume / its max, data range 1, per slice with brain, mean per subject",
            "baseline": "copy of the input contrast (T1 or T2) with the higher PSNR per subject; "
                        f"global map: per-cell mean PD over a 32x32 (T1, T2) grid fitted on {s.train_subjects} training subjects"}


def _prompts() -> dict[str, str]:
    from .data.phantom import generate_chest

    return {c: generate_chest(HELD_OUT_SEED + i, finding=c).report for i, c in enumerate(CHEST_CLASSES)}


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0 * 2.0 - 1.0


def _generate(tmp: Path, inf: Any, s: DemoSettings, step: Step) -> dict[str, Any]:
    import torch

    from . import api
    from .inference.runtime import load_model

    step(f"generate xray: {s.images_per_finding} images for each of {len(CHEST_CLASSES)} findings, "
         "then recover the finding with the aligned encoders")
    t = time.perf_counter()
    prompts = _prompts()
    out = tmp / "generate"
    out.mkdir()
    files: dict[str, list[Path]] = {}
    for c, prompt in prompts.items():
        api.generate_images("xray", prompt, out / c, settings=inf, num=s.images_per_finding)
        files[c] = sorted((out / c).glob("xray_*.png"))
    model = load_model(Path(inf.weights), torch.device("cpu"), verify=False)
    with torch.inference_mode():
        text = model.embed_text([prompts[c] for c in CHEST_CLASSES]).float()
        correct, total, confusion = 0, 0, {c: {d: 0 for d in CHEST_CLASSES} for c in CHEST_CLASSES}
        for i, c in enumerate(CHEST_CLASSES):
            x = torch.from_numpy(np.stack([_read_png(p) for p in files[c]]))[:, None]
            if x.shape[-1] != model.image_size:
                x = torch.nn.functional.interpolate(x, size=(model.image_size, model.image_size), mode="bilinear",
                                                    antialias=True, align_corners=False)
            img = model.embed_image("xray", x).float()
            guess = (img @ text.T).argmax(dim=1).tolist()
            for g in guess:
                confusion[c][CHEST_CLASSES[g]] += 1
            correct += sum(1 for g in guess if g == i)
            total += len(guess)
    s.timings["generate_s"] = round(time.perf_counter() - t, 1)
    return {"classes": list(CHEST_CLASSES), "images": total, "retrieval_accuracy": correct / total,
            "chance": 1.0 / len(CHEST_CLASSES), "confusion": confusion,
            "prompts": prompts, "method": "cosine similarity of the X-ray encoder's embedding of each generated image "
                                          "with the text encoder's embedding of each class prompt; argmax"}


def _report(tmp: Path, c: _Cohort, inf: Any, s: DemoSettings, step: Step) -> dict[str, Any]:
    import csv

    from . import api
    from .data.phantom import CHEST_FINDINGS, findings_from_report

    step(f"report on {s.chest_studies} held-out chest X-rays (macro-F1 of named findings vs majority class)")
    t = time.perf_counter()
    with open(c.chest / "labels.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["id"])
    with open(c.train_chest / "labels.csv", newline="") as fh:
        train = list(csv.DictReader(fh))
    majority = {f for f in CHEST_FINDINGS if sum(int(r[f]) for r in train) * 2 > len(train)}
    paths = [c.chest / r["id"] / "0.png" for r in rows]
    out = tmp / "report"
    out.mkdir()
    results = api.report_images(paths, settings=inf, out=out / "reports.json")
    truth = [_label_set({f for f in CHEST_FINDINGS if int(r[f])}) for r in rows]
    pred = [_label_set(findings_from_report(x.report)) for x in results.reports]
    classes = ("none", *CHEST_FINDINGS)
    f1, per = macro_f1(truth, pred, classes)
    f1_major, _ = macro_f1(truth, [_label_set(majority)] * len(truth), classes)
    examples = [{"id": r["id"], "truth": r["report"], "generated": x.report, "image": f"data/chest/{r['id']}/0.png"}
                for r, x in zip(rows[:8], results.reports[:8], strict=False)]
    s.timings["report_s"] = round(time.perf_counter() - t, 1)
    return {"studies": len(rows), "model_macro_f1": f1, "per_class_f1": per, "majority_macro_f1": f1_major,
            "majority_prediction": sorted(majority) or ["none"], "labeler": "phantom finding vocabulary "
            "(medm2g_cli.data.phantom.findings_from_report, negation-aware)", "examples": examples}


def _evaluate(tmp: Path, c: _Cohort, weights: Path, s: DemoSettings, step: Step) -> dict[str, Any]:
    from .data.adapters import get_adapter
    from .data.adapters.base import PrepareOptions, run_prepare

    step("prepare the held-out brain cohort and run `eval` (T1 + T2 -> PD) on it")
    t = time.perf_counter()
    prepared = tmp / "data" / "brain-prepared"
    # every held-out subject goes to the test split: the demo scores all of them
    # slices prepared at the model's own size (for the 2 mm phantom: padded, not resampled)
    size = int(json.loads((weights / "medm2g.json").read_text())["config"]["image"]["image_size"])
    opts = PrepareOptions(size=size, slices=12, extra={"split": "test"})
    run_prepare(get_adapter("phantom"), c.brain, prepared, opts)
    from .metrics.evaluate_model import evaluate_prepared

    report = evaluate_prepared(prepared, weights, "mri-synthesis", split="test", steps=s.steps, out=tmp / "eval")
    s.timings["eval_s"] = round(time.perf_counter() - t, 1)
    return {"summary": report.summary, "markdown": report.markdown}


# -- figures and the page ------------------------------------------------------------------------------


def _figure(path: Path, panels: list[tuple[str, np.ndarray | None, str]], head: np.ndarray) -> None:
    """One row of panels at the axial slice with the most head: each with its own fixed window."""
    from .report.preview import grid, save_png, to_uint8

    k = int(np.argmax(head.sum(axis=(0, 1))))
    tiles = []
    for _, arr, kind in panels:
        if arr is None:
            continue
        sl = np.flipud(arr[:, :, k].T)[:, ::-1]  # radiological display of the RAS phantom grid
        if kind == "ct":
            win = (-160.0, 1000.0)
        elif kind in ("err", "std"):
            hi = float(np.percentile(arr[head], 99)) if head.any() else 1.0
            win = (0.0, hi if hi > 0 else 1.0)
        else:
            lo, hi = (float(v) for v in np.percentile(arr[head], [0.5, 99.5])) if head.any() else (0.0, 1.0)
            win = (lo, hi if hi > lo else lo + 1)
        tiles.append(to_uint8(sl, win))
    save_png(grid([tiles], side=192), path, overwrite=True)


def _html(m: dict[str, Any]) -> str:
    e = html.escape

    def table(head: list[str], rows: list[list[Any]]) -> str:
        h = "".join(f"<th>{e(str(x))}</th>" for x in head)
        b = "".join("<tr>" + "".join(f"<td>{e(f'{x:.3f}' if isinstance(x, float) else str(x))}</td>" for x in r) + "</tr>"
                    for r in rows)
        return f"<table><tr>{h}</tr>{b}</table>"

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>medm2g demo</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
             ".ok{color:#080}.bad{color:#b00}</style></head><body>",
             "<h1>medm2g demo</h1><p>Held-out phantom subjects (seed "
             f"{m['held_out_seed']}; the demo weights were trained on seed {m['train_seed']}). "
             "Outputs are synthetic and not for clinical use.</p>"]
    parts.append("<h2>Checks</h2>" + table(["check", "passed"], [[k, "yes" if v else "NO"] for k, v in m["checks"].items()]))
    t = m["mri2ct"]
    parts.append("<h2>MRI &rarr; CT (translate mri2ct)</h2><p>Columns: T1 input | CT output | CT truth | |error| | "
                 f"uncertainty (std of {m['settings']['samples']} samples). MAE in HU inside the head; baseline: "
                 f"{e(t['baseline'])}.</p>")
    parts.append(table(["subject", "model MAE (HU)", "global map MAE (HU)", "autoencoder alone (floor)"],
                       [[r["subject"], r["model_mae_hu"], r["global_map_mae_hu"], r["autoencoder_mae_hu"]]
                        for r in t["subjects"]]
                       + [["mean", t["model_mae_hu"], t["global_map_mae_hu"], t["autoencoder_mae_hu"]]]))
    parts += [f"<img src='img/mri2ct_{r['subject']}.png' alt='mri2ct {e(r['subject'])}'>" for r in t["subjects"]]
    sy = m["synthesis"]
    parts.append("<h2>T1 + T2 &rarr; PD (synthesize)</h2><p>Columns: T1 | T2 | PD output | PD truth | |error| | "
                 f"uncertainty. PSNR, {e(sy['protocol'])}.</p>")
    parts.append(table(["subject", "model PSNR", "copy closest input", "global map PSNR", "autoencoder alone (ceiling)"],
                       [[r["subject"], r["model_psnr"], f"{r['copy_psnr']:.3f} ({r['copied']})", r["global_map_psnr"],
                         r["autoencoder_psnr"]] for r in sy["subjects"]]
                       + [["mean", sy["model_psnr"], sy["copy_psnr"], sy["global_map_psnr"], sy["autoencoder_psnr"]]]))
    parts += [f"<img src='img/synth_{r['subject']}.png' alt='synthesis {e(r['subject'])}'>" for r in sy["subjects"]]
    g = m["xray_generation"]
    parts.append(f"<h2>Text &rarr; X-ray (generate xray)</h2><p>Finding recovered from the generated images by the "
                 f"aligned encoders: accuracy {g['retrieval_accuracy']:.3f} over {g['images']} images "
                 f"(chance {g['chance']:.3f}).</p>")
    for c in g["classes"]:
        parts.append(f"<h3>{e(c)}</h3><p><i>{e(g['prompts'][c])}</i></p><img src='generate/{e(c)}/contact_sheet.png' "
                     f"alt='generated {e(c)}' style='max-width:600px'>")
    r = m["report"]
    parts.append(f"<h2>X-ray &rarr; report (report)</h2><p>Macro-F1 of named findings over {r['studies']} studies: "
                 f"model {r['model_macro_f1']:.3f}, majority class {r['majority_macro_f1']:.3f}.</p>")
    parts.append(table(["class", "F1"], [[k, v] for k, v in r["per_class_f1"].items()]))
    for x in r["examples"]:
        parts.append(f"<div style='display:flex;gap:1em;margin:1em 0'><img src='{e(x['image'])}' style='width:192px'>"
                     f"<div><b>truth</b>: {e(x['truth'])}<br><b>generated</b>: {e(x['generated'])}</div></div>")
    parts.append("<h2>Evaluation (medm2g eval, T1 + T2 &rarr; PD on the prepared held-out cohort)</h2>")
    parts.append(f"<pre>{e(m['eval']['markdown'])}</pre>")
    parts.append(f"<p>Finished in {m['seconds']} s.</p></body></html>")
    return "\n".join(parts)
