"""The prepared-dataset format: ``dataset.json`` + ``samples.jsonl`` + preprocessed slices.

This is the one input format that training and evaluation read, whatever the source dataset was.

``dataset.json``::

    {"format": 1, "name": "ixi", "source": "/data/IXI", "modalities": ["mri"], "keys": ["t1", "t2", "pd"],
     "flows": ["t1-t2", ...], "splits": {"train": 25, "val": 5, "test": 10},
     "split_rule": "...", "split_scaled": false, "preprocessing": {"size": 256, "intensity": {...}},
     "medm2g_version": "0.1.0", "n_samples": 4000}

``samples.jsonl`` — one JSON object per line and sample::

    {"id": "IXI002-Guys-0828_s041", "subject": "IXI002-Guys-0828", "split": "train",
     "files": {"t1": "slices/...png", "t2": "...", "pd": "..."}, "text": null, "meta": {...}}

Slices are 16-bit greyscale PNGs (or ``.npy``) holding the model range: value ``v`` in [0, 65535]
is ``v / 65535 * 2 - 1`` in [-1, 1]. ``preprocessing.intensity[key]`` (an
:class:`~medm2g_cli.data.transforms.Normalisation`) maps that range back to physical units
(HU for CT), so evaluation can score in the units the paper uses.

Paths in the manifest are relative to the folder and may not leave it (``..``, absolute paths and
symlinks pointing outside are refused): a manifest from someone else cannot make medm2g read
arbitrary files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DataError
from ..io.atomic import atomic_path
from ..io.outputs import safe_component

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
INFO_FILE = "dataset.json"
SAMPLES_FILE = "samples.jsonl"
PARTS_DIR = ".parts"
MAX_MANIFEST_BYTES = 512 * 1024 * 1024


# -- path safety ---------------------------------------------------------------------------------


def safe_path(root: str | Path, rel: str) -> Path:
    """``root / rel`` after checking that ``rel`` stays inside ``root`` (symlinks resolved).

    Raises :class:`DataError` for absolute paths, ``..`` components, or links that leave the folder.
    """
    if not isinstance(rel, str) or not rel:
        raise DataError(f"manifest entry {rel!r} is not a relative file path", "re-run medm2g prepare")
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":") or os.path.isabs(rel):
        raise DataError(f"manifest path '{rel}' is absolute", "prepared folders may only reference files inside them")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise DataError(f"manifest path '{rel}' leaves the dataset folder", "prepared folders may only reference files inside them")
    root_r = Path(root).resolve()
    full = (Path(root) / rel).resolve()
    if full != root_r and root_r not in full.parents:
        raise DataError(f"manifest path '{rel}' points outside the dataset folder (symlink?)",
                        "prepared folders may only reference files inside them")
    return Path(root) / rel


# -- slices --------------------------------------------------------------------------------------


def save_slice(root: str | Path, rel: str, arr: np.ndarray) -> str:
    """Write one slice in the model range [-1, 1] as a 16-bit PNG (``.png``) or float32 ``.npy``.

    Values outside [-1, 1] are clipped. Returns ``rel`` for the manifest.
    """
    from PIL import Image

    a = np.clip(np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=-1.0), -1.0, 1.0)
    if a.ndim != 2:
        raise DataError(f"a slice must be 2-D, got shape {a.shape}", "slice volumes before saving")
    path = safe_path(root, rel)  # before anything is written: data-derived names may not leave the folder
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if rel.endswith(".npy"):
            with open(tmp, "wb") as fh:
                np.save(fh, a)
        else:
            u16 = np.round((a + 1.0) / 2.0 * 65535.0).astype(np.uint16)
            Image.fromarray(u16).save(tmp, format="PNG")
    return rel


def load_slice(root: str | Path, rel: str) -> np.ndarray:
    """One slice of a prepared folder as float32 in [-1, 1] (path checked with :func:`safe_path`)."""
    from PIL import Image

    path = safe_path(root, rel)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except Exception as exc:  # PIL raises many types for broken files
        raise DataError(f"slice '{rel}' is not a readable image ({type(exc).__name__})", "re-run medm2g prepare") from exc
    if arr.ndim == 3:  # RGB(A) slipped in: use luminance
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        mode = "L"
    a = arr.astype(np.float32)
    scale = 65535.0 if (mode.startswith("I") or a.max() > 255) else 255.0
    return (a / scale * 2.0 - 1.0).astype(np.float32)


# -- manifest --------------------------------------------------------------------------------------


def load_manifest(root: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read and validate ``dataset.json`` + ``samples.jsonl`` of a prepared folder.

    Every record must have ``id``, ``subject``, a valid ``split`` and, for each file, a path that
    stays inside the folder. Raises :class:`DataError` with the line number otherwise.
    """
    root = Path(root)
    info_path, samples_path = root / INFO_FILE, root / SAMPLES_FILE
    if not root.is_dir():
        raise DataError(f"prepared folder '{root}' does not exist", "make one with medm2g prepare or medm2g phantom")
    if not info_path.is_file() or not samples_path.is_file():
        raise DataError(f"'{root}' is not a prepared folder (no {INFO_FILE}/{SAMPLES_FILE})",
                        "make it with medm2g prepare DATASET SRC -o OUT")
    for p in (info_path, samples_path):
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise DataError(f"'{p}' is implausibly large ({p.stat().st_size} bytes)", "re-run medm2g prepare")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{info_path}' is not valid JSON", "re-run medm2g prepare") from exc
    if not isinstance(info, dict):
        raise DataError(f"'{info_path}' must hold a JSON object", "re-run medm2g prepare")
    samples: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        text = samples_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"'{samples_path}' is not UTF-8 text", "re-run medm2g prepare") from exc
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{samples_path.name}:{n} is not valid JSON", "re-run medm2g prepare") from exc
        samples.append(validate_record(rec, root, where=f"{samples_path.name}:{n}"))
        if rec["id"] in seen:
            raise DataError(f"{samples_path.name}:{n}: duplicate sample id '{rec['id']}'", "re-run medm2g prepare")
        seen.add(rec["id"])
    return info, samples


def validate_record(rec: Any, root: str | Path, where: str = "record") -> dict[str, Any]:
    """Check one manifest record's shape and file paths; returns it unchanged."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: a sample must be a JSON object", "re-run medm2g prepare")
    for key in ("id", "subject", "split"):
        if not isinstance(rec.get(key), str) or not rec.get(key):
            raise DataError(f"{where}: missing or invalid '{key}'", "re-run medm2g prepare")
    if rec["split"] not in SPLITS:
        raise DataError(f"{where}: split '{rec['split']}' is not one of {', '.join(SPLITS)}", "re-run medm2g prepare")
    files = rec.get("files", {})
    if not isinstance(files, dict):
        raise DataError(f"{where}: 'files' must be an object", "re-run medm2g prepare")
    for key, rel in files.items():
        if not isinstance(key, str):
            raise DataError(f"{where}: invalid file key {key!r}", "re-run medm2g prepare")
        safe_path(root, rel)
    text = rec.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string", "re-run medm2g prepare")
    return rec


def write_manifest(root: str | Path, info: dict[str, Any], samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``samples.jsonl`` then ``dataset.json`` atomically; fills split counts and version.

    ``dataset.json`` is written last, so a folder with it is complete.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids: set[str] = set()
    for s in samples:
        validate_record(s, root, where=f"sample {s.get('id', '?') if isinstance(s, dict) else '?'}")
        if s["id"] in ids:
            raise DataError(f"duplicate sample id '{s['id']}'", "sample ids must be unique")
        ids.add(s["id"])
    counts = {sp: sum(1 for s in samples if s["split"] == sp) for sp in SPLITS}
    subjects = {sp: len({s["subject"] for s in samples if s["split"] == sp}) for sp in SPLITS}
    info = {"format": FORMAT_VERSION, **info, "n_samples": len(samples), "sample_counts": counts,
            "subject_counts": subjects, "medm2g_version": __version__}
    _atomic_text(root / SAMPLES_FILE, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    _atomic_text(root / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info


def _atomic_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# -- resumable per-subject parts ---------------------------------------------------------------------


def part_path(root: str | Path, subject: str) -> Path:
    """Where the finished samples of one subject are kept while a prepare runs (for resume)."""
    return Path(root) / PARTS_DIR / f"{safe_component(subject)}.jsonl"


def save_part(root: str | Path, subject: str, samples: Iterable[dict[str, Any]]) -> None:
    """Record a finished subject atomically (its slices must already be written)."""
    p = part_path(root, subject)
    p.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(p, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


def load_part(root: str | Path, subject: str) -> list[dict[str, Any]] | None:
    """The samples of a finished subject, or None when it still has to be done."""
    p = part_path(root, subject)
    if not p.is_file():
        return None
    try:
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # a damaged part is simply redone


# -- splits and slice selection ---------------------------------------------------------------------


def scaled_counts(n: int, counts: Sequence[int]) -> tuple[list[int], bool]:
    """Split ``n`` items by the rule ``counts`` (e.g. 25/5/10); scale proportionally when ``n`` is short.

    Returns ``(counts, scaled)``. With enough items the rule's counts are used as they are (extra
    items are left out, as in the paper's "first N subjects"). Scaled counts keep at least one item
    in each split when ``n`` allows it and always sum to ``min(n, sum(counts))``.
    """
    want = list(counts)
    total = sum(want)
    if n >= total:
        return want, False
    if n <= 0:
        return [0] * len(want), True
    raw = [c * n / total for c in want]
    out = [math.floor(r) for r in raw]
    # largest remainders first
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[: n - sum(out)]:
        out[i] += 1
    # every split non-empty when possible: take from the largest
    for i in range(len(out)):
        if out[i] == 0 and want[i] > 0 and n >= len([c for c in want if c > 0]):
            j = max(range(len(out)), key=lambda k: out[k])
            out[j] -= 1
            out[i] += 1
    return out, True


def assign_ordered(keys: Sequence[str], counts: Sequence[int]) -> tuple[dict[str, str], dict[str, Any]]:
    """Assign sorted ``keys`` to train/val/test in order by ``counts`` (first N, as the paper does).

    Returns ``(split of each key, description)``; keys beyond the rule's total are left out.
    """
    ordered = sorted(keys)
    got, scaled = scaled_counts(len(ordered), counts)
    out: dict[str, str] = {}
    i = 0
    for sp, c in zip(SPLITS, got, strict=True):
        for k in ordered[i : i + c]:
            out[k] = sp
        i += c
    return out, {"rule": f"first {sum(counts)} in sorted order, {'/'.join(map(str, counts))}",
                 "counts": dict(zip(SPLITS, got, strict=True)), "scaled": scaled, "available": len(ordered)}


def assign_seeded(keys: Sequence[str], fractions: Sequence[float], seed: int = 0) -> tuple[dict[str, str], dict[str, Any]]:
    """A seeded random split of ``keys`` by ``fractions`` (e.g. 0.7/0.1/0.2), reproducible across runs."""
    ordered = sorted(set(keys))
    rng = np.random.default_rng(seed)
    perm = [ordered[i] for i in rng.permutation(len(ordered))]
    n = len(perm)
    got = [int(round(f * n)) for f in fractions[:-1]]
    got.append(n - sum(got))
    if n >= 3:  # keep every split non-empty
        for i in range(len(got)):
            if got[i] <= 0:
                j = max(range(len(got)), key=lambda k: got[k])
                got[j] -= 1
                got[i] += 1
    out: dict[str, str] = {}
    i = 0
    for sp, c in zip(SPLITS, got, strict=True):
        for k in perm[i : i + c]:
            out[k] = sp
        i += c
    return out, {"rule": f"seeded random {'/'.join(str(int(f * 100)) for f in fractions)} (seed {seed})",
                 "counts": dict(zip(SPLITS, got, strict=True)), "scaled": False, "available": n}


def select_slices(mask: np.ndarray, n: int, axis: int = 2) -> list[int]:
    """Indices (ascending) of the ``n`` slices along ``axis`` with the most foreground in ``mask``.

    Ties are broken towards the centre so the choice is deterministic.
    """
    m = np.asarray(mask).astype(bool)
    other = tuple(i for i in range(m.ndim) if i != axis)
    area = m.sum(axis=other)
    centre = (m.shape[axis] - 1) / 2.0
    order = sorted(range(m.shape[axis]), key=lambda i: (-int(area[i]), abs(i - centre), i))
    return sorted(order[: min(n, m.shape[axis])])
