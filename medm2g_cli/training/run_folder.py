"""The run folder: creating it (``--resume``/``--overwrite``), its JSON files and metrics log, and the
clean-up of what a killed run left behind. Checkpoint folders themselves: :mod:`.checkpoints`."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path, check_output
from ..io.outputs import check_replaceable, write_marker

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (and a torn last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("global_step", -1) <= last_step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders a killed run left behind (``.checkpoint-*.part``)."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith((".part", ".old")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=json_default), encoding="utf-8")


def json_default(o: Any) -> Any:
    """JSON for arrays/tensors, paths, dataclasses and sets (``json.dumps(default=...)``)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(type(o).__name__)


def ensure_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create the run folder, or refuse to reuse one without --resume/--overwrite."""
    if run_dir.exists():
        if resume:
            return
        if not overwrite:
            from ..errors import OutputExistsError

            raise OutputExistsError(f"run folder '{run_dir}' already exists",
                                    "pass --resume to continue it or --overwrite to start over")
        check_replaceable(run_dir)  # --overwrite replaces medm2g's own folders only
        shutil.rmtree(run_dir)
    check_output(run_dir, overwrite=True)  # its parent exists and is writable
    run_dir.mkdir(exist_ok=True)
    write_marker(run_dir)
