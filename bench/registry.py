"""Which figures ``make bench`` runs, by name (what each measures) and by number (the README's table),
and the sizes each runs at (``default`` for ``make bench``, ``quick`` for the tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .figures import (
    ddim50_vs_dpm20,
    dicom_read_time,
    help_startup_time,
    peak_memory_vs_slices,
    training_throughput,
    translate_throughput,
    unet_flops,
)
from .speed_figure import default_sampling_vs_ddim50

FIGURES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    # name (what the figure measures; the key in bench/results.json) -> function. The order gives the
    # figure numbers the README's table and ``--only 1,3`` use.
    "translate_throughput": translate_throughput,  # 1
    "peak_memory_vs_slices": peak_memory_vs_slices,  # 2
    "help_startup_time": help_startup_time,  # 3
    "dicom_read_time": dicom_read_time,  # 4
    "training_throughput": training_throughput,  # 5
    "ddim50_vs_dpm20": ddim50_vs_dpm20,  # 6
    "unet_flops": unet_flops,  # 7
    "default_sampling_vs_ddim50": default_sampling_vs_ddim50,  # 8: bench/speed_figure.py (issue 20)
}
NUMBERS: dict[str, str] = {str(i): name for i, name in enumerate(FIGURES, 1)}
"""Figure number -> name."""


def figure_name(key: str) -> str | None:
    """The figure's name for a number (``"3"``) or a name; None when there is no such figure."""
    key = key.strip()
    return NUMBERS.get(key) or (key if key in FIGURES else None)


SIZES: dict[str, dict[str, dict[str, Any]]] = {
    # make bench: the ratios at sizes that finish in a few minutes on 2 cores
    "default": {
        "translate_throughput": {"preset": "small", "slices": 16, "steps": 5, "runs": 3},
        "peak_memory_vs_slices": {"side": 512, "small": 30, "big": 300, "steps": 1, "batch": 8, "runs": 1},
        "help_startup_time": {"runs": 5},
        "dicom_read_time": {"side": 512, "slices": 64, "runs": 5},  # a CT series: 512 x 512 slices
        "training_throughput": {"preset": "small", "steps": 20, "batch": 8, "runs": 5},  # 4-step runs were noise (0.84-1.06)
        "ddim50_vs_dpm20": {"preset": "small", "slices": 4, "ddim_steps": 50, "dpm_steps": 20, "runs": 2},
        "unet_flops": {"presets": ["tiny", "small", "full"], "timed": ["tiny", "small"], "batch": 4, "runs": 3},
        "default_sampling_vs_ddim50": {"slices": 24, "runs": 3, "ref_runs": 2},  # demo weights; 24 of the head's 95 slices
    },
    # tests: every code path, tiny sizes
    "quick": {
        "translate_throughput": {"preset": "tiny", "slices": 3, "steps": 2, "runs": 1},
        "peak_memory_vs_slices": {"side": 64, "small": 3, "big": 6, "steps": 1, "batch": 2, "runs": 1},
        "help_startup_time": {"runs": 1},
        "dicom_read_time": {"side": 32, "slices": 4, "runs": 1},
        "training_throughput": {"preset": "tiny", "steps": 1, "batch": 2, "runs": 1},
        "ddim50_vs_dpm20": {"preset": "tiny", "slices": 2, "ddim_steps": 2, "dpm_steps": 2, "runs": 1},
        "unet_flops": {"presets": ["tiny"], "timed": ["tiny"], "batch": 2, "runs": 1},
        "default_sampling_vs_ddim50": {"preset": "tiny", "slices": 3, "runs": 1, "ref_runs": 1, "sampling": {"sampler": "dpm++", "steps": 2},
              "reference": {"sampler": "ddim", "steps": 3, "eta": 1.0}},
    },
}
