"""``medm2g prepare acdc``: ACDC cardiac cine MRI, supplement C.2.

Layout: ``database/training/patientNNN/{Info.cfg, patientNNN_4d.nii.gz, patientNNN_frameXX.nii.gz,
patientNNN_frameXX_gt.nii.gz}``; SRC may be ``database/``, ``training/`` or the folder holding
``database/``. ``Info.cfg`` (``ED: 1``, ``ES: 12``, ``Group: DCM`` ...) names the end-diastolic and
end-systolic frames (1-based, zero-padded ``frameXX`` in file names).

The 100 training exams are used, as in the supplement; every short-axis slice of the ED and ES
frames becomes a sample (1,902 in total). Slices are taken along the acquisition's slice axis (the
file's third voxel axis: short-axis stacks are oblique, so no RAS reorientation). Intensities are
"rescaled to [0, 255] using SimpleITK" per frame (min/max, 256 levels kept) and mapped to [-1, 1];
"zero-padded" = padded square with the minimum, then resized to ``--size`` (512 in the paper).
Split: seeded 70/10/20 by patient (the supplement gives none). ``text`` is a prompt from the group.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .. import manifest
from .base import Job, Plan, PrepareOptions, apply_limit, not_dataset, safe_name, split_fields, to_model_size

NAME = "acdc"
DESCRIPTION = "ACDC cine MRI (database/training/patientNNN, Info.cfg): ED/ES frames, every short-axis slice"
GROUPS = {"NOR": "normal heart", "MINF": "myocardial infarction", "DCM": "dilated cardiomyopathy",
          "HCM": "hypertrophic cardiomyopathy", "RV": "abnormal right ventricle"}
_PATIENT = re.compile(r"^patient(\d{3})$")


def _training(src: Path) -> Path:
    for cand in (src, src / "training", src / "database" / "training", src / "ACDC" / "database" / "training"):
        if cand.is_dir() and any(_PATIENT.match(p.name) and (p / "Info.cfg").is_file() for p in cand.iterdir()):
            return cand
    raise not_dataset(src, "ACDC", "database/training/patientNNN/ folders with Info.cfg")


def read_info_cfg(path: Path) -> dict[str, str]:
    """``Info.cfg`` as a dict (``ED``, ``ES``, ``Group``, ``Height``, ``NbFrame``, ``Weight``)."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _frame(d: Path, patient: str, n: int, gt: bool = False) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        p = d / f"{patient}_frame{n:02d}{'_gt' if gt else ''}{suffix}"
        if p.is_file():
            return p
    return None


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Read every patient's Info.cfg and find its ED/ES frames."""
    root = _training(src)
    entries: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _PATIENT.match(p.name)):
        cfg_path = d / "Info.cfg"
        if not cfg_path.is_file():
            skipped.append(f"{d.name}: no Info.cfg")
            continue
        cfg = read_info_cfg(cfg_path)
        try:
            ed, es = int(cfg["ED"]), int(cfg["ES"])
        except (KeyError, ValueError):
            skipped.append(f"{d.name}: Info.cfg has no ED/ES frame numbers")
            continue
        frames = {}
        for phase, n in (("ED", ed), ("ES", es)):
            f = _frame(d, d.name, n)
            if f is None:
                skipped.append(f"{d.name}: {d.name}_frame{n:02d}.nii.gz ({phase}) is missing")
                break
            frames[phase] = {"frame": n, "image": str(f)}
        else:
            entries[d.name] = {"frames": frames, "group": cfg.get("Group", ""), "height": cfg.get("Height", ""),
                               "weight": cfg.get("Weight", ""), "nb_frames": cfg.get("NbFrame", "")}
    if not entries:
        raise DataError(f"no usable ACDC patient in '{root}' ({'; '.join(skipped[:2])})", "check the download is complete")
    info: dict[str, Any] = {}
    keys = apply_limit(list(entries), opts, info)
    split, how = manifest.assign_seeded(keys, (0.7, 0.1, 0.2), seed=opts.seed)
    jobs = [Job(k, split[k], entries[k]) for k in keys]
    info.update({
        "name": "acdc", "modalities": ["mri"], "keys": ["mri"], "flows": ["text-mri"],
        **split_fields(how["rule"] + " by patient (training exams; the supplement gives no split)",
                       how["counts"], bool(info.get("notes"))),
        "preprocessing": {"size": opts.size, "frames": "ED and ES (Info.cfg)", "slices": "every short-axis slice",
                          "axis": "the file's slice axis (short axis)",
                          "intensity": "per frame min/max rescaled to [0, 255] (as SimpleITK RescaleIntensity), "
                                       "then mapped to [-1, 1]; padded square with the minimum",
                          "paper": "512x512 PNG per slice (use --size 512)"},
    })
    return Plan(jobs, info, skipped)


def rescale_0_255(arr: np.ndarray) -> np.ndarray:
    """SimpleITK ``RescaleIntensity(img, 0, 255)`` then 8-bit PNG: min/max to [0, 255], rounded."""
    a = np.asarray(arr, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.rint((a - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros_like(a)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write every slice of the ED and ES frames of one patient."""
    from ...io import read_volume

    p = job.payload
    group = p["group"]
    recs = []
    for phase, fr in p["frames"].items():
        vol = read_volume(fr["image"], modality="mri")
        arr = np.asarray(vol.array)
        if arr.ndim != 3:
            raise DataError(f"{Path(fr['image']).name} is not a 3-D frame (shape {arr.shape})", "use the frameXX files, not the 4d one")
        x = (rescale_0_255(arr) / 255.0 * 2.0 - 1.0).astype(np.float32)
        # (x, y, z) -> z slices of (rows = y, cols = x), as a PNG viewer shows them
        stack = to_model_size(np.ascontiguousarray(np.transpose(x, (2, 1, 0))), opts.size)
        for k in range(stack.shape[0]):
            sid = f"{job.subject}_{phase}_s{k:02d}"
            rel = f"slices/{safe_name(job.subject)}/{phase.lower()}_{k:02d}.png"
            manifest.save_slice(out, rel, stack[k])
            text = f"short-axis cardiac cine MRI, {'end-diastolic' if phase == 'ED' else 'end-systolic'} frame, " \
                   f"{GROUPS.get(group, group or 'unknown group')}"
            recs.append({"id": sid, "subject": job.subject, "split": job.split, "files": {"mri": rel}, "text": text,
                         "meta": {"phase": phase, "frame": fr["frame"], "slice": k, "group": group,
                                  "height": p["height"], "weight": p["weight"], "shape": list(arr.shape),
                                  "intensity": {"mri": {"mode": "minmax-0-255", "low": float(arr.min()),
                                                        "high": float(arr.max())}}}})
    return recs
