"""Shared helpers of the benchmarks: timing medians, machine description, peak-memory probes."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def medians(runs: int, fn: Callable[[], Any], warmup: int = 0) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; {median_s, runs_s}."""
    for _ in range(warmup):
        fn()
    values = [timed(fn) for _ in range(runs)]
    return {"median_s": statistics.median(values), "runs_s": [round(v, 5) for v in values]}


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where the benchmark ran."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "hostname": platform.node(),
        "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "device": device,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/loadavg", encoding="utf-8") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info


def versions() -> dict[str, str]:
    """Package versions (the same list the run reports use)."""
    from medm2g_cli.inference.runtime import versions as v

    return v()


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM); 0 where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
