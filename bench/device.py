"""GPU benchmark (one command, under 8 minutes): the ``full`` preset's translate and training
throughput in bf16 and the achieved fraction of the GPU's dense bf16 peak (MFU).

    bash bench/gpu.sh                      # on a CUDA machine: full preset, bf16
    python bench/device.py --dry-run       # CPU, tiny preset: exercises every code path

Measured (random-init weights, no downloads):

1. UNet forward throughput, batch ``--batch`` x 2 guidance rows, bf16 weights + channels_last,
   eager and (unless ``--no-compile``) ``torch.compile``; MFU from FLOPs counted with torch's
   FLOP counter on the meta device (bmm attention, performance.md section 1).
2. ``translate_sources`` end to end on a 512 x 512 x ``--slices`` volume (DPM-Solver++,
   ``--steps``, guidance 2): slices/s and the UNet-only MFU (a lower bound: VAE and encoders are
   not counted as useful FLOPs).
3. Training samples/s of the medm2g loop (Accelerate, bf16 autocast) vs a plain diffusers loop on
   the same UNet; MFU with 3 x forward FLOPs per sample.
4. ``make bench`` figure 8 for this preset (:func:`bench.speed_figure.device_figure`): the demo
   model's recommended sampler settings vs ``--sampler ddim --steps 50 --eta 1`` on ``--sampling-slices``
   slices of the held-out phantom head, time ratio and per-stage breakdown (bf16 weights).

Writes ``--out`` (default bench/device_results.json) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PEAKS_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}
"""Dense bf16 tensor-core peaks (TFLOP/s) by GPU name fragment."""


def gpu_peak(name: str, override: float | None) -> float | None:
    """The dense bf16 peak of the GPU called ``name`` (TFLOP/s), ``override`` if given."""
    if override:
        return override
    for key, v in PEAKS_TFLOPS.items():
        if key in name:
            return v
    return None


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unet_forward(model: Any, batch: int, iters: int, compiled: bool, backend: str) -> dict[str, Any]:
    """Seconds per guided UNet forward (2 x ``batch`` rows) in the model's dtype."""
    import torch

    from bench.figures import unet_inputs

    dev = model.device
    unet = model.parts["unet_ct"]
    if compiled:
        unet.compile(backend=backend, dynamic=False)
    z, t, tok = unet_inputs(model, 2 * batch, str(dev), model.dtype)
    z = z.contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        unet(z, t, encoder_hidden_states=tok)
        _sync(dev)
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(iters):
            unet(z, t, encoder_hidden_states=tok)
        _sync(dev)
    return {"rows": 2 * batch, "first_call_s": first, "s_per_forward": (time.perf_counter() - t1) / iters}


def main(argv: list[str] | None = None) -> int:
    """Run the GPU figures and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="full")
    ap.add_argument("--batch", type=int, default=16, help="slices per forward (x2 rows with guidance)")
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--sampling-slices", type=int, default=24,
                    help="phantom slices for figure 8 (default sampling vs DDIM-50)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: from the GPU name)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, minimal sizes (tests the code path)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "device_results.json")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.preset, args.batch, args.slices, args.steps = "cpu", "tiny", 2, 3, 2
        args.train_batch, args.train_steps, args.iters, args.sampling_slices = 2, 1, 1, 2

    import numpy as np
    import torch

    from bench.common import machine, versions
    from bench.figures import count_unet_flops, train_throughput
    from medm2g_cli.config import SampleConfig
    from medm2g_cli.engine import MedM2G
    from medm2g_cli.engine.speed import optimize_for_inference
    from medm2g_cli.inference.pipeline import Source, translate_sources
    from medm2g_cli.io.atomic import atomic_path
    from medm2g_cli.io.volume import Volume

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device — run on a GPU machine, or use --dry-run for the CPU code path", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = gpu_peak(name, args.peak_tflops)
    t_start = time.perf_counter()
    out: dict[str, Any] = {"machine": machine(str(dev)), "versions": versions(), "gpu": name,
                           "peak_bf16_tflops": peak, "settings": vars(args) | {"out": str(args.out)}}

    def mfu(flops_per_s: float) -> float | None:
        return None if not peak else flops_per_s / (peak * 1e12)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    from medm2g_cli.config import model_preset

    cfg = model_preset(args.preset, modalities=("ct", "mri"))
    flops = count_unet_flops(cfg)
    out["unet_gflop_per_eval"] = flops / 1e9
    log(f"{args.preset}: {flops / 1e9:.1f} GFLOP per UNet eval (batch 1)")

    # 1. UNet forward, bf16 weights (eager, then compiled)
    torch.manual_seed(0)
    model = MedM2G.from_preset(args.preset, seed=0, modalities=("ct", "mri"), device=dev)
    model = optimize_for_inference(model.to(torch.bfloat16), channels_last=True)
    rows: dict[str, Any] = {}
    modes = [("eager", False)] + ([] if args.no_compile else [("compiled", True)])
    for label, comp in modes:
        r = unet_forward(model, args.batch, args.iters, comp, "eager" if args.dry_run else "inductor")
        r["tflops"] = flops * r["rows"] / r["s_per_forward"] / 1e12
        r["mfu"] = mfu(r["tflops"] * 1e12)
        rows[label] = r
        log(f"UNet {label}: {r['s_per_forward'] * 1e3:.1f} ms / forward of {r['rows']} rows, "
            f"{r['tflops']:.1f} TFLOP/s, MFU {r['mfu'] if r['mfu'] is None else round(r['mfu'], 3)}")
    out["unet_forward_bf16"] = rows

    # 2. translate end to end (bf16 weights; the compiled UNet is kept when compiled)
    side = model.image_size
    rng = np.random.default_rng(0)
    vol = Volume(rng.uniform(0, 1000, size=(side, side, args.slices)).astype(np.float32), np.eye(4), modality="mri")
    sample = SampleConfig(sampler="dpm++", steps=args.steps, guidance=2.0, seed=0)
    translate_sources(model, [Source("mri", vol)], "ct", sample=sample, batch_size=args.batch)  # warm-up
    _sync(dev)
    t = time.perf_counter()
    res = translate_sources(model, [Source("mri", vol)], "ct", sample=sample, batch_size=args.batch)
    _sync(dev)
    dt = time.perf_counter() - t
    useful = flops * 2 * args.steps * args.slices
    out["translate_bf16"] = {"slices": args.slices, "seconds": dt, "slices_per_s": args.slices / dt,
                             "s_per_189_slice_volume": dt / args.slices * 189, "unet_tflops": useful / dt / 1e12,
                             "mfu_unet_only": mfu(useful / dt), "finite": bool(np.isfinite(res.mean.array).all()),
                             "sampler": "dpm++", "steps": args.steps, "batch_size": args.batch}
    log(f"translate: {args.slices / dt:.2f} slices/s ({dt / args.slices * 189:.1f} s per 189 slices), "
        f"UNet MFU {out['translate_bf16']['mfu_unet_only']}")
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # 3. training, bf16 autocast, fp32 master weights
    tr = train_throughput(args.preset, args.train_steps, args.train_batch, 1, device=str(dev), mixed_precision="bf16")
    tr["mfu_medm2g"] = mfu(3 * flops * tr["medm2g_samples_per_s"])
    tr["mfu_plain"] = mfu(3 * flops * tr["plain_samples_per_s"])
    out["train_bf16"] = tr
    log(f"training: medm2g {tr['medm2g_samples_per_s']:.1f} vs plain {tr['plain_samples_per_s']:.1f} samples/s "
        f"(ratio {tr['ratio']:.2f}), MFU {tr['mfu_medm2g']}")

    # 4. figure 8: the recommended sampler settings vs DDIM-50 (bf16, not compiled)
    from bench.speed_figure import device_figure

    f8 = device_figure(args.preset, str(dev), args.sampling_slices, 1 if args.dry_run else 2, dry_run=args.dry_run)
    out["default_sampling_vs_ddim50"] = f8
    log("figure 8: " + "; ".join(f"{t} {f8[t]['time_ratio']:.1f}x ({f8[t]['ddim50']['median_s']:.2f} -> "
                                  f"{f8[t]['default']['median_s']:.2f} s)" for t in ("translate", "synthesize")))
    out["total_s"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(out, indent=2, default=str) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
