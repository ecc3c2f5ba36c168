"""Checkpoint integrity: no pickle runs on resume, every file is hashed, a damaged newest checkpoint
falls back to the previous intact one.

- **No code from a checkpoint.** Accelerate loads its registered custom objects with
  ``torch.load(weights_only=False)``, which runs any pickle a checkpoint folder holds. The LR
  schedulers are therefore not registered with Accelerate: their state dicts (plain numbers) are
  saved here as ``state/schedulers.pt`` and read back with ``torch.load(weights_only=True)``, and
  ``accelerator.load_state`` is called with ``weights_only=True`` for the optimizer (its RNG files
  use Accelerate's own weights-only loader).
- **Hashes.** ``trainer_state.json`` (written last) records the sha256 of every other file of the
  checkpoint; a resume verifies them first. A checkpoint without them (older medm2g) or with a
  missing or changed file is skipped with one ``warning:`` line, and the run resumes from the newest
  checkpoint that verifies.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MedM2GWarning
from ..io.atomic import atomic_dir

if TYPE_CHECKING:
    import torch

    from .ema import EMA
    from .interfaces import TrainJob

TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
SCHEDULERS_FILE = "schedulers.pt"
_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in chunks (checkpoints hold GB-sized optimizer states)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(folder: Path, exclude: str) -> dict[str, str]:
    """sha256 of every file under ``folder`` except ``exclude`` (its trainer state), by relative path."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != exclude}


def save_schedulers(state_dir: Path, schedulers: Sequence[Any]) -> None:
    """Write the schedulers' state dicts (numbers only) for a weights-only load."""
    import torch

    torch.save([s.state_dict() for s in schedulers], str(state_dir / SCHEDULERS_FILE))


def load_schedulers(state_dir: Path, schedulers: Sequence[Any]) -> None:
    """Restore the schedulers' states with ``torch.load(weights_only=True)`` (no pickled code runs)."""
    import torch

    states = _safe_load(state_dir.parent, lambda: torch.load(str(state_dir / SCHEDULERS_FILE), map_location="cpu",
                                                            weights_only=True))
    if len(states) != len(schedulers):
        raise ConfigError(f"checkpoint '{state_dir.parent.name}' holds {len(states)} scheduler state(s), this phase "
                          f"has {len(schedulers)}", "resume with the same settings as the original run")
    for sched, st in zip(schedulers, states, strict=True):
        sched.load_state_dict(st)


def _safe_load(ckpt: Path, load: Any) -> Any:
    """Run ``load``; a file a weights-only load refuses (a pickle with code) becomes a ConfigError."""
    import pickle

    try:
        return load()
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ConfigError(f"checkpoint '{ckpt.name}' holds state that cannot be loaded safely "
                          f"({' '.join(str(exc).split())[:120]})",
                          "resume from another checkpoint, or start over with --overwrite") from exc


def problem(ckpt: Path, trainer_state: str) -> str | None:
    """Why ``ckpt`` cannot be trusted (None when every recorded file is there with its sha256)."""
    try:
        meta = json.loads((ckpt / trainer_state).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"its {trainer_state} is unreadable"
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files:
        return "it records no file hashes (written by an older medm2g)"
    for rel, digest in sorted(files.items()):
        p = ckpt / rel
        if ".." in Path(rel).parts or not p.is_file():
            return f"'{rel}' is missing"
        if sha256_file(p) != digest:
            return f"'{rel}' does not match its sha256"
    return None


def intact_checkpoint(dirs: Sequence[tuple[int, Path]], trainer_state: str, *, warn: bool = True) -> Path | None:
    """The newest checkpoint of ``dirs`` (``(step, folder)``, oldest first) whose files verify.

    Each one skipped gives one ``warning:`` line; when checkpoints exist but none verifies, the
    resume is refused rather than silently restarted from step 0.
    """
    skipped: list[str] = []
    for _, ckpt in reversed(dirs):
        why = problem(ckpt, trainer_state)
        if why is None:
            return ckpt
        skipped.append(ckpt.name)
        if warn:
            warnings.warn(f"checkpoint '{ckpt.name}' is damaged or incomplete ({why}); trying the previous one",
                          MedM2GWarning, stacklevel=2)
    if skipped:
        raise ConfigError(f"no intact checkpoint to resume from ({', '.join(skipped)} failed verification)",
                          "start the run again with --overwrite (or restore the checkpoint files)")
    return None


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step (temporary ``.part`` folders are ignored)."""
    out: list[tuple[int, Path]] = []
    if not run_dir.is_dir():
        return out
    for p in run_dir.iterdir():
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / TRAINER_STATE).is_file():
            try:
                out.append((int(p.name[len(CHECKPOINT_PREFIX):]), p))
            except ValueError:
                continue
    return sorted(out)


def save_checkpoint(
    run_dir: Path, global_step: int, job: TrainJob, accelerator: Any, ema: EMA | None,
    state: dict[str, Any], keep: int | None = None, schedulers: Sequence[Any] = (),
) -> Path:
    """Write ``run_dir/checkpoint-<global_step>/`` atomically (model folder + optimizer/RNG/scheduler
    state); ``trainer_state.json``, written last, records the sha256 of every other file."""
    from accelerate.utils import broadcast_object_list
    from safetensors.torch import save_file, save_model

    dest = run_dir / f"{CHECKPOINT_PREFIX}{global_step}"
    cm = None
    tmp_name: list[Any] = [None]
    if accelerator.is_main_process:
        cm = atomic_dir(dest, overwrite=True)
        tmp_name = [str(cm.__enter__())]
    if accelerator.num_processes > 1:
        tmp_name = broadcast_object_list(tmp_name, from_process=0)
    tmp = Path(tmp_name[0])
    try:
        # All processes: optimizer/scheduler/RNG (accelerate writes one RNG file per rank).
        accelerator.save_state(str(tmp / "state"))
        accelerator.wait_for_everyone()  # every rank's RNG file is in place before the files are hashed
        if accelerator.is_main_process:
            save_schedulers(tmp / "state", schedulers)
            save_model(job.module, str(tmp / "state" / "weights.safetensors"))
            if ema is not None:
                save_file(ema.state_dict(), str(tmp / "state" / "ema.safetensors"))
            if ema is not None:
                with ema.swapped():
                    job.save_model(tmp / "model")
            else:
                job.save_model(tmp / "model")
            (tmp / TRAINER_STATE).write_text(
                json.dumps({"global_step": global_step, "data_position": {"step": state.get("phase_step")},
                            **state, "files": file_hashes(tmp, TRAINER_STATE)}, indent=2),
                encoding="utf-8",
            )
        accelerator.wait_for_everyone()
    except BaseException as exc:
        if cm is not None:
            cm.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if cm is not None:
        cm.__exit__(None, None, None)
        if keep:
            for _, old in checkpoint_dirs(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return dest


def load_checkpoint(ckpt: Path, accelerator: Any, module: torch.nn.Module, ema: EMA | None,
                    phase: str, schedulers: Sequence[Any]) -> int:
    """Restore weights, optimizer, scheduler and RNG from ``ckpt`` (verified by :func:`prepare_resume`;
    nothing is unpickled: safetensors and weights-only loads); return the phase step to resume at."""
    from safetensors.torch import load_file, load_model

    meta = json.loads((ckpt / TRAINER_STATE).read_text(encoding="utf-8"))
    if meta.get("phase") != phase:
        raise ConfigError(f"checkpoint '{ckpt.name}' belongs to phase '{meta.get('phase')}', not '{phase}'",
                          "resume with the same --stages/--flows as the original run")
    stray = sorted(p.name for p in (ckpt / "state").glob("custom_checkpoint_*.pkl"))
    if stray:  # accelerate would unpickle these with weights_only=False
        raise ConfigError(f"checkpoint '{ckpt.name}' holds pickled state ({stray[0]}) that medm2g never loads",
                          "resume from a checkpoint written by this medm2g version, or start over with --overwrite")
    load_model(module, str(ckpt / "state" / "weights.safetensors"), device=str(accelerator.device))
    _safe_load(ckpt, lambda: accelerator.load_state(str(ckpt / "state"), load_kwargs={"weights_only": True}))
    load_schedulers(ckpt / "state", schedulers)
    if ema is not None:
        ema_file = ckpt / "state" / "ema.safetensors"
        if not ema_file.exists():
            raise ConfigError(f"checkpoint '{ckpt.name}' has no EMA weights", "resume with the same --ema setting")
        ema.load_state_dict(load_file(str(ema_file)))
    return int(meta["phase_step"])


def prepare_resume(run_dir: Path, *, main: bool = True) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint whose files verify (a damaged newer one is skipped with a warning) and its
    trainer state; the main process also drops metrics logged after it."""
    from .run_folder import METRICS_FILE, truncate_metrics

    ckpt = intact_checkpoint(checkpoint_dirs(run_dir), TRAINER_STATE, warn=main)
    if ckpt is None:
        return None, None
    meta = json.loads((ckpt / TRAINER_STATE).read_text(encoding="utf-8"))
    if main:
        truncate_metrics(run_dir / METRICS_FILE, int(meta["global_step"]))
    return ckpt, meta
