"""``medm2g prepare ixi``: IXI T1/T2/PD (NIfTI) for MRI synthesis, as the MedM2G supplement (C.3) describes.

Layout: the IXI-T1/T2/PD tarballs unpack to flat folders of ``IXI<id>-<site>-<n>-<MOD>.nii.gz``;
SRC may hold them flat or in one sub-folder per tarball (``IXI-T1/``, ...). ``.nii`` is accepted too.

Split: subjects with all of T1, T2 and PD (the others are reported as skipped), sorted, the first 40
split 25/5/10 in that order (scaled down with fewer subjects or ``--limit``).

Preprocessing: T2 is registered to T1 (affine, SimpleITK Mattes MI); PD shares T2's dual-echo
acquisition, so it goes through the same transform (it is registered separately only when its grid
differs from T2's). All three are sliced on T1's grid, reoriented to RAS; the 100 axial slices with
the most head (Otsu threshold of T1: IXI is not skull-stripped) are kept.

Options (``--option``): ``register=false`` resamples T2/PD to T1 by their headers only;
``transform=rigid|affine`` (default affine); ``reg_sampling=0.05`` (fraction of voxels the MI
metric samples).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .. import manifest
from . import base
from .base import Job, Plan, PrepareOptions

NAME = "ixi"
DESCRIPTION = "IXI T1/T2/PD NIfTI (brain-development.org): first 40 complete subjects, 25/5/10, T2/PD registered to T1"
CONTRASTS: tuple[str, ...] = ("t1", "t2", "pd")
SPLIT_RULE = (25, 5, 10)
DEFAULT_SLICES = 100
_FILE = re.compile(r"^(IXI\d{3}-[A-Za-z]+-\d{4})-(T1|T2|PD)\.nii(\.gz)?$")


def _index(src: Path) -> dict[str, dict[str, str]]:
    """subject key -> {contrast: path}, from SRC and its direct sub-folders (one per tarball)."""
    found: dict[str, dict[str, str]] = {}
    folders = [src] + sorted(p for p in src.iterdir() if p.is_dir())
    for folder in folders:
        for p in sorted(folder.iterdir()):
            m = _FILE.match(p.name)
            if m and p.is_file():
                # one file per contrast: the first in sorted order (.nii before .nii.gz if both exist)
                found.setdefault(m.group(1), {}).setdefault(m.group(2).lower(), str(p))
    return found


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Find complete subjects and split the first 40 of them 25/5/10 in sorted order."""
    if not src.is_dir():
        raise base.not_dataset(src, "IXI", "a folder of IXI<id>-<site>-<n>-{T1,T2,PD}.nii.gz files")
    index = _index(src)
    if not index:
        raise base.not_dataset(src, "IXI", "IXI<id>-<site>-<n>-{T1,T2,PD}.nii.gz files (flat, or in IXI-T1/, IXI-T2/, IXI-PD/)")
    skipped = [f"{k}: missing {', '.join(c.upper() for c in CONTRASTS if c not in v)}"
               for k, v in sorted(index.items()) if any(c not in v for c in CONTRASTS)]
    complete = [k for k, v in index.items() if all(c in v for c in CONTRASTS)]
    if not complete:
        raise DataError(f"no IXI subject in '{src}' has all of T1, T2 and PD ({len(index)} subjects found)",
                        "unpack IXI-T1.tar, IXI-T2.tar and IXI-PD.tar into the folder")
    info: dict[str, Any] = {}
    keys = base.apply_limit(complete, opts, info)
    split, how = manifest.assign_ordered(keys, SPLIT_RULE)
    register = str(opts.extra.get("register", "true")).lower() not in ("0", "false", "no")
    transform = str(opts.extra.get("transform", "affine"))
    if transform not in ("rigid", "affine"):
        raise ConfigError(f"--option transform={transform} is not supported for IXI", "use transform=rigid or transform=affine")
    jobs = [Job(k, split[k], {"files": index[k], "register": register, "transform": transform}) for k in sorted(split)]
    info.update({
        "name": "ixi", "modalities": ["mri"], "keys": list(CONTRASTS),
        "flows": ["t1-t2", "t1-pd", "t2-pd", "t2+pd-t1", "t1+t2-pd", "t1+pd-t2"],
        **base.split_fields(how["rule"] + " (subjects with T1, T2 and PD)", how["counts"], how["scaled"]),
        "subjects_available": len(complete),
        "preprocessing": {
            "size": opts.size, "axis": "axial (RAS)", "slices_per_subject": opts.slices or DEFAULT_SLICES,
            "slice_rule": "most head foreground (Otsu threshold of T1; IXI is not skull-stripped)",
            "registration": (f"T2 -> T1 {transform} (SimpleITK Mattes MI); PD with T2's transform (same acquisition)"
                             if register else "none: T2/PD resampled to T1's grid by their headers"),
            "intensity": "per volume, the MRI preset of inference (percentiles) mapped to [-1, 1]",
        },
    })
    return Plan(jobs, info, skipped)


def register_to_t1(t1: Any, t2: Any, pd: Any, transform: str = "affine", sampling: float = 0.05,
                   register: bool = True, seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """T2 and PD on T1's grid: T2 registered to T1, PD through the same transform when it shares T2's grid.

    Returns ``(t2 on T1 grid, pd on T1 grid, info)``; ``info["transform"]`` is the SimpleITK transform
    mapping T1 physical points to T2 points (None without registration).
    """
    from ...io.registration import register as reg_fn
    from ...io.registration import resample_to

    if not register:
        return resample_to(t2, t1), resample_to(pd, t1), {"transform": None}
    res = reg_fn(t1, t2, transform, sampling=sampling, iterations=200, seed=seed)
    same_grid = t2.shape[:3] == pd.shape[:3] and np.allclose(t2.affine, pd.affine, atol=1e-3)
    meta: dict[str, Any] = {"transform": res.transform, "metric_t2": res.metric}
    if same_grid:
        pd_res = resample_to(pd, t1, res.transform)
    else:
        r2 = reg_fn(t1, pd, transform, sampling=sampling, iterations=200, seed=seed)
        pd_res, meta["metric_pd"] = r2.resampled, r2.metric
    return res.resampled, pd_res, meta


def head_mask(arr: np.ndarray) -> np.ndarray:
    """Foreground (head) of a T1 volume: above the Otsu threshold of its non-zero voxels."""
    from skimage.filters import threshold_otsu

    vals = arr[np.isfinite(arr) & (arr > 0)]
    if vals.size < 2 or vals.min() == vals.max():
        return arr > 0
    return arr > threshold_otsu(vals)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Register, normalise and slice one subject."""
    from ...io import read_volume

    f = job.payload["files"]
    vols = {c: read_volume(f[c], modality="mri") for c in CONTRASTS}
    for c, v in vols.items():
        if v.array.ndim != 3:
            raise DataError(f"{Path(f[c]).name} is not a 3-D volume (shape {v.shape})", "re-download the file")
    sampling = float(opts.extra.get("reg_sampling", 0.05))
    t2, pd, reg = register_to_t1(vols["t1"], vols["t2"], vols["pd"], job.payload["transform"], sampling,
                                 job.payload["register"], seed=opts.seed)
    arrays: dict[str, np.ndarray] = {}
    norms: dict[str, dict[str, Any]] = {}
    for c, v in (("t1", vols["t1"]), ("t2", t2), ("pd", pd)):
        arrays[c], norms[c] = base.normalise(base.canonical_array(v), c)
    t1_raw = base.canonical_array(vols["t1"])
    idx = manifest.select_slices(head_mask(t1_raw), opts.slices or DEFAULT_SLICES, axis=2)
    m = re.match(r"IXI\d{3}-([A-Za-z]+)-", job.subject)
    meta = {"site": m.group(1) if m else "", "shape": list(vols["t1"].shape),
            "registration_metric": reg.get("metric_t2")}
    return base.write_volume_slices(out, job.subject, job.split, arrays, idx, opts.size, axis=2, meta=meta, norms=norms)
