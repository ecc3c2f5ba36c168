"""``medm2g prepare brain-mri-ct``: Kaggle "Brain tumor MRI and CT scan" (chenghanpu), supplement B (CT <-> MRI).

Layout: ``data(processed)/{train,val,test}_{input,output}.npy`` (SRC may be that folder or the one
holding it): ``(N, 256, 256)`` float arrays of paired slices, ``input`` = MRI and ``output`` = CT
(``--option input=ct`` swaps them). The file names give the split. The download's ``Dicom/``
folder is not used. Caution from the dataset notes: whether the processed arrays are true pairs is
disputed; inspect them before relying on them.

The arrays are already intensity-normalised (not HU), so each slice is min/max mapped to [-1, 1].
Slices carry no patient ID: each pair is its own subject; jobs are chunks of 64 pairs.
``--limit N`` keeps the first pairs of each split, scaled proportionally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .. import manifest
from .base import Job, Plan, PrepareOptions, limit_per_split, not_dataset, split_fields, to_model_size

NAME = "brain-mri-ct"
DESCRIPTION = "Kaggle brain tumor MRI and CT scan: data(processed)/{split}_{input,output}.npy paired slices"
CHUNK = 64


def _root(src: Path) -> Path:
    for cand in (src, src / "data(processed)", src / "data_processed"):
        if (cand / "train_input.npy").is_file() and (cand / "train_output.npy").is_file():
            return cand
    raise not_dataset(src, "brain-mri-ct (Kaggle)", "data(processed)/ with {train,val,test}_{input,output}.npy")


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Check the arrays' shapes and chunk the pairs."""
    root = _root(src)
    first = str(opts.extra.get("input", "mri")).lower()
    if first not in ("mri", "ct"):
        raise ConfigError(f"--option input={first} is not known", "use input=mri or input=ct")
    sizes: dict[str, int] = {}
    for sp, stem in (("train", "train"), ("val", "val"), ("test", "test")):
        pi, po = root / f"{stem}_input.npy", root / f"{stem}_output.npy"
        if not pi.is_file():
            continue
        if not po.is_file():
            raise DataError(f"'{pi.name}' has no matching '{po.name}' in '{root}'", "re-download data(processed)/")
        a, b = np.load(pi, mmap_mode="r"), np.load(po, mmap_mode="r")
        if a.shape != b.shape or a.ndim != 3:
            raise DataError(f"{pi.name} {a.shape} and {po.name} {b.shape} are not matching (N, H, W) stacks",
                            "re-download data(processed)/")
        sizes[sp] = a.shape[0]
    info: dict[str, Any] = {}
    by_split = {sp: [f"{sp}_{i:05d}" for i in range(sizes.get(sp, 0))] for sp in manifest.SPLITS}
    kept, scaled = limit_per_split(by_split, opts, info)
    jobs = []
    for sp in manifest.SPLITS:
        n = len(kept[sp])
        for c in range(0, n, CHUNK):
            jobs.append(Job(f"{sp}-chunk{c // CHUNK:04d}", sp,
                            {"root": str(root), "split": sp, "start": c, "stop": min(n, c + CHUNK), "input": first}))
    info.update({
        "name": "brain-mri-ct", "modalities": ["mri", "ct"], "keys": ["mri", "ct"], "flows": ["mri-ct", "ct-mri"],
        **split_fields("the split of the file names ({train,val,test}_*.npy); counts are slice pairs",
                       {sp: len(kept[sp]) for sp in manifest.SPLITS}, scaled),
        "caution": "pairing of the processed arrays is disputed in the dataset's discussion; inspect before use",
        "preprocessing": {"size": opts.size, "pairs": f"input = {first}, output = {'ct' if first == 'mri' else 'mri'}",
                          "intensity": "per slice min/max mapped to [-1, 1] (arrays are pre-normalised, not HU)"},
    })
    return Plan(jobs, info, [])


def _minmax(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float32))
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.full_like(a, -1.0)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write one chunk of slice pairs."""
    p = job.payload
    root, sp = Path(p["root"]), p["split"]
    other = "ct" if p["input"] == "mri" else "mri"
    arrays = {p["input"]: np.load(root / f"{sp}_input.npy", mmap_mode="r"), other: np.load(root / f"{sp}_output.npy", mmap_mode="r")}
    recs = []
    for i in range(p["start"], p["stop"]):
        sid = f"{sp}_{i:05d}"
        files = {}
        for key, arr in arrays.items():
            rel = f"slices/{sp}/{sid}_{key}.png"
            manifest.save_slice(out, rel, to_model_size(_minmax(arr[i])[None], opts.size)[0])
            files[key] = rel
        recs.append({"id": sid, "subject": sid, "split": job.split, "files": files, "text": None,
                     "meta": {"index": i, "source": f"{sp}_input.npy / {sp}_output.npy"}})
    return recs
