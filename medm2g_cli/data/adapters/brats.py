"""``medm2g prepare brats2020``: BraTS 2020 training data (T1, T1ce, T2, FLAIR), supplement C.3.

Layout: ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_NNN/BraTS20_Training_NNN_{t1,t1ce,t2,flair,seg}.nii.gz``
(``.nii`` in some mirrors). SRC may be that folder, a folder holding it (also the Kaggle
``BraTS2020_TrainingData/`` wrapper), or a folder of ``BraTS20_Training_*`` subjects.
Known defect handled: ``BraTS20_Training_355``'s segmentation is named ``W39_1998.09.19_Segm.nii``;
any ``*seg*`` NIfTI in the subject folder is taken as its segmentation.

Split: the first 55 training subjects in ID order (the supplement does not list them; this is the
ICON-lab convention), 25/10/20, scaled down with fewer subjects or ``--limit``. Subjects missing a
contrast are reported as skipped.

Preprocessing: the volumes are distributed skull-stripped and co-registered on one 1 mm grid, so no
registration is done; the 100 axial slices with the most brain (non-zero voxels) are kept.
``name_mapping.csv`` gives each subject's grade (HGG/LGG) when present.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .. import manifest
from . import base
from .base import Job, Plan, PrepareOptions

NAME = "brats2020"
DESCRIPTION = "BraTS 2020 training data (NIfTI): first 55 subjects, 25/10/20, T1/T1ce/T2/FLAIR"
CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
SPLIT_RULE = (25, 10, 20)
DEFAULT_SLICES = 100
_SUBJECT = re.compile(r"^BraTS20_Training_(\d{3})$")


def _root(src: Path) -> Path:
    """The folder holding the ``BraTS20_Training_*`` subject folders."""
    for cand in (src, src / "MICCAI_BraTS2020_TrainingData", src / "BraTS2020_TrainingData" / "MICCAI_BraTS2020_TrainingData",
                 src / "BraTS2020_TrainingData"):
        if cand.is_dir() and any(_SUBJECT.match(p.name) for p in cand.iterdir() if p.is_dir()):
            return cand
    if src.is_dir() and (any(p.name.startswith("BraTS20_Validation_") for p in src.iterdir())
                         or (src / "MICCAI_BraTS2020_ValidationData").is_dir()):
        raise DataError(f"'{src}' holds the BraTS 2020 validation data (no segmentations, not used by the paper)",
                        "pass MICCAI_BraTS2020_TrainingData (or the folder holding it)")
    raise base.not_dataset(src, "BraTS 2020", "MICCAI_BraTS2020_TrainingData/ or BraTS20_Training_NNN/ subject folders")


def _nifti(d: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        if (d / (stem + suffix)).is_file():
            return d / (stem + suffix)
    return None


def _seg(d: Path, subject: str) -> Path | None:
    exact = _nifti(d, f"{subject}_seg")
    if exact:
        return exact
    # BraTS20_Training_355 ships W39_1998.09.19_Segm.nii: any other *seg* NIfTI is the segmentation
    others = sorted(p for p in d.iterdir() if p.is_file() and "seg" in p.name.lower() and p.name.lower().endswith((".nii", ".nii.gz")))
    return others[0] if others else None


def _grades(src: Path, root: Path) -> dict[str, str]:
    for p in (root / "name_mapping.csv", src / "name_mapping.csv"):
        if p.is_file():
            with open(p, newline="", encoding="utf-8-sig") as fh:
                return {r.get("BraTS_2020_subject_ID", ""): r.get("Grade", "") for r in csv.DictReader(fh)}
    return {}


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Find the training subjects with all four contrasts; the first 55 split 25/10/20 in ID order."""
    root = _root(src)
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir() and _SUBJECT.match(p.name))
    files: dict[str, dict[str, str]] = {}
    skipped: list[str] = []
    for s in subjects:
        d = root / s
        got = {c: _nifti(d, f"{s}_{c}") for c in CONTRASTS}
        missing = [c for c, p in got.items() if p is None]
        if missing:
            skipped.append(f"{s}: missing {', '.join(f'{s}_{c}.nii[.gz]' for c in missing)}")
            continue
        seg = _seg(d, s)
        files[s] = {**{c: str(p) for c, p in got.items()}, **({"seg": str(seg)} if seg else {})}
    if not files:
        raise DataError(f"no BraTS 2020 subject in '{root}' has all of t1, t1ce, t2 and flair", "check the download is complete")
    info: dict[str, Any] = {}
    keys = base.apply_limit(list(files), opts, info)
    split, how = manifest.assign_ordered(keys, SPLIT_RULE)
    grades = _grades(src, root)
    jobs = [Job(k, split[k], {"files": files[k], "grade": grades.get(k, "")}) for k in sorted(split)]
    info.update({
        "name": "brats2020", "modalities": ["mri"], "keys": list(CONTRASTS),
        "flows": ["t1-t2", "t1-flair", "t2-flair", "t2+t1+flair-t1ce", "t1+flair-t2", "t2+flair-t1", "t1+t2-flair"],
        **base.split_fields(how["rule"].replace("sorted order", "BraTS ID order") + " (training subjects)", how["counts"], how["scaled"]),
        "subjects_available": len(files), "subjects_used": sorted(split),
        "preprocessing": {
            "size": opts.size, "axis": "axial (RAS)", "slices_per_subject": opts.slices or DEFAULT_SLICES,
            "slice_rule": "most brain (non-zero voxels; BraTS is skull-stripped)",
            "registration": "none: BraTS volumes are distributed co-registered on one grid",
            "intensity": "per volume, the MRI preset of inference (percentiles) mapped to [-1, 1]",
        },
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Normalise and slice one subject."""
    from ...io import read_volume

    f = job.payload["files"]
    vols = {c: read_volume(f[c], modality="mri") for c in CONTRASTS}
    ref = vols["t1"]
    for c, v in vols.items():
        if v.shape[:3] != ref.shape[:3]:
            raise DataError(f"{Path(f[c]).name} has shape {v.shape}, {Path(f['t1']).name} has {ref.shape}",
                            "BraTS volumes must share one grid; re-download the subject")
    raw = {c: base.canonical_array(v) for c, v in vols.items()}
    arrays, norms = {}, {}
    for c in CONTRASTS:
        arrays[c], norms[c] = base.normalise(raw[c], c)
    brain = np.any(np.stack([raw[c] > 0 for c in CONTRASTS]), axis=0)
    idx = manifest.select_slices(brain, opts.slices or DEFAULT_SLICES, axis=2)
    seg = None
    if "seg" in f:
        seg_vol = read_volume(f["seg"])
        if seg_vol.shape[:3] == ref.shape[:3]:
            seg = base.canonical_array(seg_vol)
    meta = {"grade": job.payload.get("grade", ""), "shape": list(ref.shape),
            "segmentation": Path(f["seg"]).name if "seg" in f else None}
    recs = base.write_volume_slices(out, job.subject, job.split, arrays, idx, opts.size, axis=2, meta=meta, norms=norms)
    for r in recs:
        if seg is not None:
            r["meta"]["tumour_voxels"] = int((np.rint(seg[:, :, r["meta"]["slice"]]) > 0).sum())
    return recs
