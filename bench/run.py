"""``make bench``: the performance figures of issues 10 and 20, printed and written to bench/results.json.

Usage: ``python bench/run.py [--only 1,help_startup_time] [--quick] [--out PATH] [--threads N]``.
Figures are chosen by number (the README's table) or by name (what they measure; the keys of
``figures`` in the JSON, each record also carries its ``figure`` number). ``--quick`` uses tiny
sizes (the test suite runs it); the default sizes finish in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def headline(key: str, r: dict[str, Any]) -> str:
    """One line per figure (``key``: its name) for the printed table."""
    if "error" in r:
        return f"ERROR: {r['error']}"
    ok = "" if "pass" not in r else ("  PASS" if r["pass"] else "  FAIL")
    if key == "translate_throughput":
        return (f"medm2g {r['medm2g_slices_per_s']:.2f} vs plain {r['plain_slices_per_s']:.2f} slices/s"
                f" -> ratio {r['ratio']:.2f} (target {r['target']}){ok}")
    if key == "peak_memory_vs_slices":
        w, t = r["working_mb"], r["peak_rss_total_mb"]
        ks = sorted(w, key=int)
        return (f"working MB {w[ks[1]]:.0f} vs {w[ks[0]]:.0f} -> ratio {r['ratio']:.2f} (target {r['target']}){ok};"
                f" total RSS {t[ks[1]]:.0f} vs {t[ks[0]]:.0f} MB (ratio {r['ratio_total_rss']:.2f})")
    if key == "help_startup_time":
        return (f"--help {r['help_s']:.3f} s vs import torch {r['import_torch_s']:.3f} s -> ratio {r['ratio']:.2f}"
                f" (target {r['target']}){ok}")
    if key == "dicom_read_time":
        return (f"medm2g {r['medm2g_s']:.3f} s vs SimpleITK {r['sitk_s']:.3f} s -> ratio {r['ratio']:.2f}"
                f" (target {r['target']}){ok}")
    if key == "training_throughput":
        return (f"medm2g {r['medm2g_samples_per_s']:.1f} vs plain {r['plain_samples_per_s']:.1f} samples/s"
                f" -> ratio {r['ratio']:.2f} (target {r['target']}){ok}")
    if key == "ddim50_vs_dpm20":
        return (f"DDIM-50 {r['ddim50']['median_s']:.2f} s vs DPM++-20 {r['dpm20']['median_s']:.2f} s -> time ratio"
                f" {r['time_ratio']:.2f}; PSNR {r['ddim50']['psnr_db']:.2f} vs {r['dpm20']['psnr_db']:.2f} dB"
                f" (diff {r['psnr_diff_db']:+.2f}; {r['weights']})")
    if key == "unet_flops":
        parts = []
        for p, row in r["presets"].items():
            s = f"{p} {row['gflop_per_eval']:.3g} GFLOP/eval"
            if "achieved_gflop_per_s" in row:
                s += f" @ {row['achieved_gflop_per_s']:.1f} GFLOP/s"
            parts.append(s)
        return "; ".join(parts)
    if key == "default_sampling_vs_ddim50":
        from bench.speed_figure import headline as speed_headline

        return speed_headline(r)
    return json.dumps(r)[:100]


def main(argv: list[str] | None = None) -> int:
    """Run the figures, print the table, write the JSON; exit 1 if a figure failed to run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="", help="comma-separated figure numbers or names (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import torch

    from bench.common import machine, versions
    from bench.registry import FIGURES, NUMBERS, SIZES, figure_name
    from medm2g_cli.io.atomic import atomic_path

    if args.threads:
        torch.set_num_threads(args.threads)
    asked = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in asked if figure_name(k) is None]
    if unknown:
        print(f"error: unknown figure(s) {', '.join(unknown)} — use 1..{len(FIGURES)} or {', '.join(FIGURES)}",
              file=sys.stderr)
        return 2
    chosen = {figure_name(k) for k in asked}
    keys = [k for k in FIGURES if k in chosen] if asked else list(FIGURES)
    number = {name: n for n, name in NUMBERS.items()}
    sizes = SIZES["quick" if args.quick else "default"]
    results: dict[str, Any] = {
        "machine": machine(), "versions": versions(),
        "settings": {"mode": "quick" if args.quick else "default", "sizes": {k: sizes[k] for k in keys},
                     "statistic": "median of the runs listed per figure",
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "figures": {},
    }
    failed = False
    t_all = time.perf_counter()
    for k in keys:
        t = time.perf_counter()
        try:
            r = FIGURES[k](sizes[k])
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
            failed = True
            r = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        r["seconds"] = round(time.perf_counter() - t, 2)
        results["figures"][k] = {"figure": int(number[k]), **r}
        print(f"[{number[k]} {k}] {headline(k, r)}  ({r['seconds']:.0f} s)", flush=True)
    results["settings"]["total_s"] = round(time.perf_counter() - t_all, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {os.path.relpath(args.out)} ({results['settings']['total_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
