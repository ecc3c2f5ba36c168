"""What every dataset adapter shares: the plan/process contract, resumable parallel runs, slice writing.

An adapter module exposes ``NAME``, ``DESCRIPTION`` and two functions:

- ``scan(src, opts) -> Plan``: check that ``src`` is the named dataset (else one
  :class:`~medm2g_cli.errors.DataError` saying what was expected and what was found), list its
  subjects, and assign splits. Cheap: reads file names and small text files only.
- ``process(job, out, opts) -> list[dict]``: preprocess one subject (or study) into slices under
  ``out`` and return its manifest records. Must be a module-level function (it runs in worker
  processes) and must only write inside ``out``.

:func:`run_prepare` does the rest the same way for every dataset: output checks, resume (a subject's
records are kept in ``OUT/.parts`` once its slices are written, so a rerun after a crash or SIGKILL
skips it), worker processes, progress, a list of failed subjects by name, and the manifest.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ... import modalities
from ...errors import DataError, OutputExistsError
from ...io.orientation import to_canonical_array
from ...io.outputs import MARKER, check_replaceable, check_separate, folder_lock, safe_component
from .. import manifest
from ..transforms import SliceGeometry, normalisation_for

Progress = Callable[[int, int, str], None] | None


@dataclass
class PrepareOptions:
    """Options common to all adapters (``extra`` holds adapter-specific ones)."""

    size: int = 256
    workers: int = 1
    limit: int | None = None
    overwrite: bool = False
    seed: int = 0
    slices: int | None = None  # slices per subject for volume datasets (None: the paper's number)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """One unit of work: a subject (volumes) or a study (X-rays), with its split and file paths."""

    subject: str
    split: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What ``scan`` found: jobs in order, and the dataset.json fields it can already fill."""

    jobs: list[Job]
    info: dict[str, Any]
    skipped: list[str] = field(default_factory=list)  # "name: reason" for inputs left out on purpose


class Adapter(Protocol):
    """The module-level interface of an adapter (see the module docstring)."""

    NAME: str
    DESCRIPTION: str

    def scan(self, src: Path, opts: PrepareOptions) -> Plan: ...

    def process(self, job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]: ...


@dataclass
class PrepareResult:
    """Summary of one ``prepare`` run."""

    out: Path
    info: dict[str, Any]
    done: int
    resumed: int
    failed: list[str]
    skipped: list[str]


def _process_one(module_name: str, job: Job, out: str, opts: PrepareOptions) -> tuple[str, list[dict[str, Any]] | None, str]:
    import importlib

    try:  # single-threaded math in workers: N workers should use N cores, not N x all cores
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    mod = importlib.import_module(module_name)
    try:
        recs = mod.process(job, Path(out), opts)
    except Exception as exc:  # reported by subject name; the run goes on with the others
        msg = getattr(exc, "one_line", None)
        text = msg() if callable(msg) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return job.subject, None, text
    manifest.save_part(out, job.subject, recs)
    return job.subject, recs, ""


def run_prepare(adapter: Any, src: str | Path, out: str | Path, opts: PrepareOptions,
                progress: Progress = None) -> PrepareResult:
    """Prepare ``src`` with ``adapter`` into ``out`` (resumable; see the module docstring)."""
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"source '{src}' does not exist", f"pass the folder of the downloaded {adapter.NAME} dataset")
    check_separate([out], [src])
    replace = out.exists() and opts.overwrite
    if out.exists():
        complete = (out / manifest.INFO_FILE).is_file() and not (out / manifest.PARTS_DIR).exists()
        if opts.overwrite:
            check_replaceable(out)
        elif complete:
            raise OutputExistsError(f"'{out}' already holds a prepared dataset", "pass --overwrite to redo it")
        elif out.is_file() or (any(out.iterdir()) and not (out / manifest.PARTS_DIR).is_dir()):
            raise OutputExistsError(f"'{out}' exists and is not an unfinished prepare run",
                                    "choose an empty or new folder, or pass --overwrite")
    plan = adapter.scan(src, opts)
    jobs = plan.jobs[: opts.limit] if opts.limit else plan.jobs
    if opts.limit and len(plan.jobs) > opts.limit:
        plan.info.setdefault("notes", []).append(f"--limit {opts.limit}: {len(plan.jobs)} subjects available")
    if not jobs:
        raise DataError(f"no usable subjects found in '{src}' for {adapter.NAME}", "check the folder layout (see `medm2g prepare --help`)")
    folders: dict[str, str] = {}
    for j in jobs:  # two ids that differ only in unsafe characters would share files: refuse before any work
        other = folders.setdefault(safe_component(j.subject), j.subject)
        if other != j.subject:
            raise DataError(f"subjects '{other}' and '{j.subject}' map to the same folder name", "rename one of them")
    if replace and out.is_file():
        out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "prepare"):
        if replace:  # under the lock, so a concurrent prepare cannot lose its files; the marker (lock) stays
            for entry in out.iterdir():
                if entry.name != MARKER:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return _prepare_locked(adapter, src, out, opts, plan, jobs, progress)


def _prepare_locked(adapter: Any, src: Path, out: Path, opts: PrepareOptions, plan: Plan, jobs: list[Job],
                    progress: Progress) -> PrepareResult:
    (out / manifest.PARTS_DIR).mkdir(exist_ok=True)
    for folder, _, names in os.walk(out):  # temporaries of a killed run of this folder (we hold its lock)
        for name in names:
            if name.startswith(".") and ".part" in name:
                (Path(folder) / name).unlink(missing_ok=True)
    records: dict[str, list[dict[str, Any]]] = {}
    todo: list[Job] = []
    for job in jobs:
        part = manifest.load_part(out, job.subject)
        if part is not None:
            records[job.subject] = part
        else:
            todo.append(job)
    resumed = len(records)
    failed: list[str] = []
    total = len(jobs)
    if progress:
        progress(resumed, total, "")
    module_name = adapter.__name__
    if opts.workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=opts.workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_process_one, module_name, j, str(out), opts) for j in todo]
            for fut in as_completed(futs):
                subject, recs, err = fut.result()
                _collect(subject, recs, err, records, failed)
                if progress:
                    progress(len(records) + len(failed), total, subject)
    else:
        for j in todo:
            subject, recs, err = _process_one(module_name, j, str(out), opts)
            _collect(subject, recs, err, records, failed)
            if progress:
                progress(len(records) + len(failed), total, subject)
    samples = [r for j in jobs for r in records.get(j.subject, [])]
    if not samples:
        raise DataError(f"every subject failed ({'; '.join(failed[:3])})", "fix the files named above and rerun")
    info = dict(plan.info)
    info.setdefault("name", adapter.NAME)
    info.setdefault("source", str(src.resolve()))
    info.setdefault("seed", opts.seed)
    info["failed"] = failed
    info["skipped"] = plan.skipped
    final = manifest.write_manifest(out, info, samples)
    if not failed:
        shutil.rmtree(out / manifest.PARTS_DIR, ignore_errors=True)
    return PrepareResult(out, final, len(records) - resumed, resumed, failed, plan.skipped)


def _collect(subject: str, recs: list[dict[str, Any]] | None, err: str,
             records: dict[str, list[dict[str, Any]]], failed: list[str]) -> None:
    if recs is None:
        failed.append(f"{subject}: {err}")
    else:
        records[subject] = recs


# -- helpers for adapters -----------------------------------------------------------------------------


def to_model_size(slices: np.ndarray, size: int) -> np.ndarray:
    """[n, h, w] in [-1, 1] -> [n, size, size] exactly as inference fits slices (pad square, resize)."""
    n, h, w = slices.shape
    return SliceGeometry(h, w, size).to_model(slices).numpy()[:, 0]


def canonical_array(vol: Any) -> np.ndarray:
    """The volume's array on the RAS grid (the grid inference slices on)."""
    arr, _ = to_canonical_array(np.asarray(vol.array, dtype=np.float32), vol.affine)
    return arr


def normalise(arr: np.ndarray, key: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Map a volume/image to [-1, 1] with the same preset inference uses; returns (array, how)."""
    mod = "mri" if key in modalities.MRI_CONTRASTS else key
    norm = normalisation_for(np.asarray(arr, dtype=np.float32), mod)
    return norm.forward(arr), {"modality": mod, "low": norm.low, "high": norm.high}


def write_volume_slices(out: Path, subject: str, split: str, arrays: dict[str, np.ndarray], indices: Sequence[int],
                        size: int, axis: int = 2, meta: dict[str, Any] | None = None,
                        norms: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Slice canonical volumes (already in [-1, 1]) at ``indices`` along ``axis`` into 16-bit PNGs.

    Returns one manifest record per slice index with a file for each key of ``arrays``.
    """
    recs = []
    stacks = {k: to_model_size(np.moveaxis(a, axis, 0)[list(indices)], size) for k, a in arrays.items()}
    folder = safe_component(subject)
    for j, idx in enumerate(indices):
        sid = f"{subject}_s{idx:03d}"
        files = {}
        for k, st in stacks.items():
            rel = f"slices/{folder}/{k}_{idx:03d}.png"
            manifest.save_slice(out, rel, st[j])
            files[k] = rel
        m = {"slice": int(idx), "axis": int(axis), **(meta or {})}
        if norms:
            m["intensity"] = norms
        recs.append({"id": sid, "subject": subject, "split": split, "files": files, "text": None, "meta": m})
    return recs


def read_image_2d(path: Path) -> np.ndarray:
    """A 2-D greyscale image as float32 (any PIL mode: L, I;16, RGB, P are converted explicitly)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im).astype(np.float32)
            else:
                arr = np.asarray(im.convert("L")).astype(np.float32)
    except FileNotFoundError as exc:
        raise DataError(f"image '{path}' is missing", "check the dataset is complete") from exc
    except Exception as exc:
        raise DataError(f"image '{path}' is not readable ({type(exc).__name__})", "re-download the file") from exc
    return arr


# -- shared by the dataset adapters ------------------------------------------------------------------


def describe_folder(src: Path, n: int = 6) -> str:
    """A short 'what is there' for error messages: the first entries of ``src`` (or its name)."""
    src = Path(src)
    if not src.is_dir():
        return f"a file '{src.name}'" if src.exists() else "nothing (the path does not exist)"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in src.iterdir() if not p.name.startswith("."))
    if not names:
        return "an empty folder"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def not_dataset(src: Path, dataset: str, expected: str, hint: str | None = None) -> DataError:
    """The one-line error for a source folder that is not ``dataset``: what was expected, what was found."""
    return DataError(f"'{src}' is not a {dataset} folder: expected {expected}; found {describe_folder(src)}",
                     hint or f"pass the folder of the downloaded {dataset} dataset as distributed")


def apply_limit(keys: Sequence[str], opts: PrepareOptions, info: dict[str, Any]) -> list[str]:
    """The first ``--limit`` of ``keys`` (sorted), applied *before* splitting so the split rule scales down.

    Adds a note to ``info`` (dataset.json) when the limit cut anything.
    """
    ordered = sorted(keys)
    if opts.limit and len(ordered) > opts.limit:
        info.setdefault("notes", []).append(f"--limit {opts.limit}: {len(ordered)} subjects available, "
                                            f"the first {opts.limit} in sorted order used")
        return ordered[: opts.limit]
    return ordered


def limit_per_split(by_split: dict[str, list[str]], opts: PrepareOptions,
                    info: dict[str, Any]) -> tuple[dict[str, list[str]], bool]:
    """Keep a given (official) split under ``--limit``: the first items of each split, scaled proportionally.

    Returns ``(kept keys per split, scaled)`` and notes the limit in ``info``.
    """
    sizes = [len(by_split.get(sp, [])) for sp in manifest.SPLITS]
    total = sum(sizes)
    if not opts.limit or total <= opts.limit:
        return {sp: sorted(by_split.get(sp, [])) for sp in manifest.SPLITS}, False
    got, _ = manifest.scaled_counts(opts.limit, sizes)
    info.setdefault("notes", []).append(f"--limit {opts.limit}: {total} available; the official split "
                                        f"{'/'.join(map(str, sizes))} scaled to {'/'.join(map(str, got))}")
    return {sp: sorted(by_split.get(sp, []))[:c] for sp, c in zip(manifest.SPLITS, got, strict=True)}, True


def split_fields(rule: str, counts: dict[str, int], scaled: bool) -> dict[str, Any]:
    """The split part of dataset.json (rule, subject counts, whether it was scaled down)."""
    return {"split_rule": rule, "splits": {sp: int(counts.get(sp, 0)) for sp in manifest.SPLITS},
            "split_scaled": bool(scaled)}


def save_picture(out: Path, rel: str, img: np.ndarray, size: int, key: str = "xray") -> dict[str, Any]:
    """Normalise a 2-D picture with ``key``'s preset (X-ray: min/max), fit it to ``size`` and save it at ``rel``.

    Returns how it was normalised (for the record's ``meta.intensity``).
    """
    x, how = normalise(np.asarray(img, dtype=np.float32), key)
    manifest.save_slice(out, rel, to_model_size(x[None], size)[0])
    return how


safe_name = safe_component  # adapters name data-derived path components with this (one rule: io.outputs)
