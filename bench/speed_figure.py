"""Figure 8 of ``make bench`` (issue 20): the default sampler settings vs DDIM-50 on a held-out head.

"Default" is what ``medm2g translate mri2ct`` / ``medm2g synthesize`` use with no sampler flags
(the model's ``sampling`` block in ``medm2g.json``, else Table A3); the reference is the same
command with ``--sampler ddim --steps 50 --eta 1``. Both run the same pipeline (background slices
skipped, the same automatic batch size rule), so the ratio is the sampler's. Timed on a phantom
head the demo weights never saw (seed 424242, the ``medm2g demo`` subject), on slices spread over
the whole head (``slices`` of them, background included in proportion). Quality: MAE in HU inside
the head (labels > 0) for MRI -> CT; PSNR over the slices with brain (``medm2g demo``'s protocol)
for T1 + T2 -> PD. Times are medians of ``runs``; the outputs are seeded, so quality is the same
in every run. The stage breakdown (:mod:`medm2g_cli.inference.stages`) is of the last run.

:func:`default_vs_ddim50` is also run by ``bench/device.py`` (``bash bench/gpu.sh``) for the
``full`` preset on a GPU.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import median

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 424242  # medm2g demo's held-out phantom seed (never trained on)
REFERENCE = {"sampler": "ddim", "steps": 50, "eta": 1.0}  # --sampler ddim --steps 50 --eta 1


def held_out_head(resolution: int = 2, seed: int = HELD_OUT_SEED) -> Any:
    """Subject sub-001 of ``medm2g phantom brain --seed SEED`` (the demo's held-out head)."""
    from medm2g_cli.data.phantom.brain import generate_brain_subject
    from medm2g_cli.data.phantom.layouts import _subject_seed

    return generate_brain_subject(_subject_seed(seed, 0), resolution=resolution, tumour_rate=0.5)


def spread(n: int, k: int) -> np.ndarray:
    """``k`` axial slice indices evenly spread over ``n`` (the whole head, background included)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _task(subj: Any, task: str, ks: np.ndarray) -> tuple[list[Any], str, np.ndarray, np.ndarray]:
    from medm2g_cli.inference.pipeline import Source
    from medm2g_cli.io.volume import Volume

    def vol(name: str) -> Any:
        return Volume(np.ascontiguousarray(subj.images[name][:, :, ks], dtype=np.float32), subj.affine, modality="mri")

    if task == "translate":
        return [Source("mri", vol("t1"))], "ct", subj.images["ct"][:, :, ks].astype(np.float32), subj.labels[:, :, ks]
    return ([Source("t1", vol("t1"), 0.5), Source("t2", vol("t2"), 0.5)], "pd",
            subj.images["pd"][:, :, ks].astype(np.float32), subj.labels[:, :, ks])


def _quality(task: str, pred: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> float:
    from medm2g_cli.metrics.volume import mae_hu, psnr_volume

    if task == "translate":
        return mae_hu(pred, ref, labels > 0)
    brain = np.asarray(np.isin(np.rint(labels), (2, 3, 6, 7, 8)).any(axis=(0, 1)))
    return psnr_volume(pred, ref, brain)


def default_vs_ddim50(model: Any, sampling: dict[str, Any], subj: Any, *, slices: int, runs: int, ref_runs: int,
                      tasks: tuple[str, ...] = ("translate", "synthesize"), reference: dict[str, Any] | None = None,
                      autocast: Any = None, sync: Any = None) -> dict[str, Any]:
    """Time and quality of the default settings (``sampling``: the model's block) vs DDIM-50 per task."""
    import torch

    from medm2g_cli.inference.pipeline import translate_sources
    from medm2g_cli.inference.runtime import InferenceSettings, auto_batch_size
    from medm2g_cli.inference.sampling import as_dict, model_sampling
    from medm2g_cli.inference.stages import stage_timer

    ks = spread(subj.shape[2], slices)
    out: dict[str, Any] = {}
    for task in tasks:
        sources, target, ref, labels = _task(subj, task, ks)
        block = model_sampling({"sampling": sampling} if sampling else {}, target=target)
        plans: dict[str, tuple[Any, dict[str, str], int, int]] = {}
        for name, flags in (("default", InferenceSettings()),
                            ("ddim50", InferenceSettings(**(reference or REFERENCE)))):  # type: ignore[arg-type]
            cfg, origin = flags.sample_origin(model=block)
            bs = auto_batch_size(model.device, model.image_size, 1, cfg.guidance != 1.0)
            warm = dataclasses.replace(cfg, steps=min(cfg.steps, 2))  # kernels and allocations, not the timed work
            translate_sources(model, sources, target, sample=warm, batch_size=bs, autocast=autocast)
            plans[name] = (cfg, origin, bs, runs if name == "default" else ref_runs)
        times: dict[str, list[float]] = {"default": [], "ddim50": []}
        last: dict[str, tuple[Any, dict[str, Any]]] = {}
        # Interleaved (default, DDIM-50, default, ...): load changes on a shared machine hit both alike.
        for i in range(max(runs, ref_runs)):
            for name, (cfg, _, bs, n_runs) in plans.items():
                if i >= n_runs:
                    continue
                with stage_timer(model) as st:
                    t = time.perf_counter()
                    res = translate_sources(model, sources, target, sample=cfg, batch_size=bs, autocast=autocast)
                    if sync is not None:
                        sync()
                    dt = time.perf_counter() - t
                times[name].append(round(dt, 4))
                last[name] = (res, st.as_dict(dt))
        rows: dict[str, Any] = {}
        for name, (cfg, origin, bs, _) in plans.items():
            res, stages = last[name]
            fg = len(ks) - res.background_slices
            rows[name] = {"median_s": median(times[name]), "runs_s": times[name], "settings": as_dict(cfg),
                          "source": origin, "batch_size": bs, "quality": _quality(task, res.mean.array, ref, labels),
                          "unet_rows_per_slice": stages["unet_rows"] / max(fg, 1),
                          "background_slices": res.background_slices, "stages_s": stages}
        d, r = rows["default"], rows["ddim50"]
        diff = d["quality"] - r["quality"]
        ratio = r["median_s"] / d["median_s"]
        ok = diff <= 2.0 if task == "translate" else diff >= -0.3
        out[task] = {**rows, "time_ratio": ratio, "quality_diff": diff,
                     "metric": "MAE HU inside the head (lower is better)" if task == "translate"
                     else "PSNR dB over slices with brain (higher is better)",
                     "target": ">= 5x, MAE <= +2 HU" if task == "translate" else ">= 5x, PSNR >= -0.3 dB",
                     "pass": bool(ratio >= 5.0 and ok)}
    out["settings"] = {"slices": [int(k) for k in ks], "of": int(subj.shape[2]), "shape": list(subj.shape),
                       "phantom": f"medm2g phantom brain --seed {HELD_OUT_SEED} --resolution 2, sub-001",
                       "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
                       "threads": torch.get_num_threads()}
    return out


def default_sampling_vs_ddim50(size: dict[str, Any]) -> dict[str, Any]:
    """Default sampling vs ``--sampler ddim --steps 50 --eta 1`` on the held-out phantom head (CPU)."""
    import json

    from medm2g_cli.engine import MedM2G
    from medm2g_cli.engine.speed import optimize_for_inference

    weights = ROOT / "weights" / "medm2g-demo"
    if size.get("preset"):  # quick mode: random-init tiny model, settings from the size table
        model = MedM2G.from_preset(size["preset"], seed=0, modalities=("ct", "mri"))
        sampling, label = dict(size["sampling"]), f"random-init {size['preset']} (times only)"
    else:
        model = MedM2G.from_pretrained(weights)
        sampling = json.loads((weights / "medm2g.json").read_text()).get("sampling") or {}
        label = f"trained weights {weights.relative_to(ROOT)}"
    from medm2g_cli.inference.runtime import autoencoder_dtype

    # As the commands load it with no --precision flag (both the default and the DDIM-50 command).
    vae_dtype = autoencoder_dtype(model.device, "auto")
    optimize_for_inference(model, vae_dtype=vae_dtype)
    r = default_vs_ddim50(model, sampling, held_out_head(), slices=size["slices"], runs=size["runs"],
                          ref_runs=size["ref_runs"], reference=size.get("reference"))
    r["settings"]["autoencoder_dtype"] = str(vae_dtype or model.dtype).replace("torch.", "")
    return {"name": "default sampling vs DDIM-50 on a held-out phantom head", "weights": label, **r,
            "pass": all(r[t]["pass"] for t in ("translate", "synthesize")),
            "note": "ratios in one run; absolute times vary with load on shared machines"}


def device_figure(preset: str, device: str, slices: int, runs: int, dry_run: bool = False) -> dict[str, Any]:
    """Figure 8 for ``bench/device.py``: a random-init ``preset`` model in bf16 on ``device``, with the
    sampling block the bench chose for the demo model (its ``medm2g.json``) vs DDIM-50. Random
    weights: the time ratio and stage breakdown are meaningful, the quality columns are not."""
    import json

    import torch

    from medm2g_cli.engine import MedM2G
    from medm2g_cli.engine.speed import optimize_for_inference

    dev = torch.device(device)
    model = MedM2G.from_preset(preset, seed=0, modalities=("ct", "mri"), device=dev).to(torch.bfloat16)
    optimize_for_inference(model, channels_last=dev.type == "cuda")
    meta = json.loads((ROOT / "weights" / "medm2g-demo" / "medm2g.json").read_text())
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    r = default_vs_ddim50(model, meta.get("sampling") or {}, held_out_head(), slices=slices, runs=runs,
                          ref_runs=runs, reference={"sampler": "ddim", "steps": 3, "eta": 1.0} if dry_run else None,
                          sync=sync)
    return {"name": "default sampling (demo model's block) vs DDIM-50, random-init weights", "preset": preset, **r,
            "note": "random-init weights: quality columns are not meaningful; time ratio and stages are"}


def headline(r: dict[str, Any]) -> str:
    """The printed line of figure 8."""
    parts = []
    for task, unit in (("translate", "HU"), ("synthesize", "dB")):
        t = r[task]
        parts.append(f"{task}: {t['time_ratio']:.1f}x faster ({t['ddim50']['median_s']:.1f} -> "
                     f"{t['default']['median_s']:.1f} s), {t['ddim50']['quality']:.2f} -> {t['default']['quality']:.2f} {unit}")
    st = r["translate"]["default"]["stages_s"]["share"]
    parts.append("default stages " + " ".join(f"{k} {v:.0%}" for k, v in sorted(st.items(), key=lambda kv: -kv[1])))
    return "; ".join(parts) + (f"  {'PASS' if r['pass'] else 'FAIL'}" if "pass" in r else "")
