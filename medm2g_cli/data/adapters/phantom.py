"""``medm2g prepare phantom``: the built-in phantom's plain layout (brain or chest).

Brain (``sub-NNN/{t1,t2,pd,flair,t1ce,ct,labels}.nii.gz`` + ``finding.txt``): all contrasts and the CT
are on one grid, so every slice is a pixel-aligned sample of every key; the ``N`` axial slices with the
most brain are kept (``--slices``, default 40). The text of a slice says whether the tumour is in it.
Subjects are split by a seeded 70/10/20 rule.

Chest (``<study>/{0,1}.png`` + ``report.txt`` and ``labels.csv``): the frontal view (``0.png``) and its
report; the split column of ``labels.csv`` is used.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...modalities import MRI_CONTRASTS
from .. import manifest
from .base import (
    Job,
    Plan,
    PrepareOptions,
    canonical_array,
    normalise,
    read_image_2d,
    safe_name,
    to_model_size,
    write_volume_slices,
)

NAME = "phantom"
DESCRIPTION = "the built-in phantom's plain layout (medm2g phantom brain|chest --layout plain)"
BRAIN_KEYS: tuple[str, ...] = (*MRI_CONTRASTS, "ct")
DEFAULT_SLICES = 40


def _kind(src: Path) -> str:
    if any(src.glob("sub-*/t1.nii.gz")):
        return "brain"
    if (src / "labels.csv").is_file() and any(src.glob("*/report.txt")):
        return "chest"
    found = sorted(p.name for p in src.iterdir())[:5] if src.is_dir() else [src.name]
    raise DataError(
        f"'{src}' is not a phantom plain layout: expected sub-*/t1.nii.gz (brain) or labels.csv + */report.txt "
        f"(chest), found {', '.join(found) or 'an empty folder'}",
        "make one with `medm2g phantom brain|chest --layout plain`, or name the right dataset",
    )


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """List subjects/studies and assign splits."""
    kind = _kind(src)
    if kind == "brain":
        subjects = sorted(p.parent.name for p in src.glob("sub-*/t1.nii.gz"))
        forced = str(opts.extra.get("split", "")).lower()
        if forced:  # e.g. --option split=test: a held-out cohort scored as a whole
            if forced not in manifest.SPLITS:
                raise DataError(f"--option split={forced} is not one of {', '.join(manifest.SPLITS)}", "e.g. split=test")
            split = dict.fromkeys(subjects, forced)
            how = {"rule": f"all subjects in {forced} (--option split)", "scaled": False,
                   "counts": {sp: len(subjects) if sp == forced else 0 for sp in manifest.SPLITS}}
        else:
            # a randomised rendering (sub-NNN-rKK, `phantom brain --randomise`) goes where its subject goes
            source = {s: s.split("-r")[0] for s in subjects}
            by_source, how = manifest.assign_seeded(sorted(set(source.values())), (0.7, 0.1, 0.2), seed=opts.seed)
            split = {s: by_source[source[s]] for s in subjects}
            how["counts"] = {sp: sum(v == sp for v in split.values()) for sp in manifest.SPLITS}
        jobs = [Job(s, split[s], {"kind": "brain", "dir": str(src / s)}) for s in subjects]
        info = {"name": "phantom-brain", "modalities": ["mri", "ct"], "keys": list(BRAIN_KEYS),
                "flows": ["ct-mri", "t1-t2", "t1-pd", "t2-pd", "t1-flair", "text-ct"],
                "split_rule": how["rule"], "splits": how["counts"], "split_scaled": how["scaled"],
                "preprocessing": {"size": opts.size, "axis": "axial", "slices_per_subject": opts.slices or DEFAULT_SLICES,
                                  "slice_rule": "most brain", "intensity": _intensity_doc()}}
        return Plan(jobs, info)
    rows = _labels(src)
    jobs = [Job(r["id"], r["split"] if r["split"] in manifest.SPLITS else "train",
                {"kind": "chest", "dir": str(src / r["id"]), "row": r}) for r in rows]
    counts = {sp: sum(1 for j in jobs if j.split == sp) for sp in manifest.SPLITS}
    info = {"name": "phantom-chest", "modalities": ["xray", "text"], "keys": ["xray", "text"], "flows": ["text-xray"],
            "split_rule": "the split column of labels.csv", "splits": counts, "split_scaled": False,
            "preprocessing": {"size": opts.size, "view": "frontal (0.png)", "intensity": _intensity_doc()}}
    return Plan(jobs, info)


def _intensity_doc() -> dict[str, Any]:
    from ... import modalities

    out = {}
    for m in ("ct", "mri", "xray"):
        p = modalities.get(m).preset
        assert p is not None
        out[m] = {"mode": p.mode, "low": p.low, "high": p.high}
    return out


def _labels(src: Path) -> list[dict[str, str]]:
    with open(src / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "id" not in rows[0]:
        raise DataError(f"'{src / 'labels.csv'}' has no id column", "regenerate the chest phantom")
    return sorted(rows, key=lambda r: r["id"])


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Preprocess one brain subject or chest study."""
    if job.payload["kind"] == "chest":
        return _chest(job, out, opts)
    return _brain(job, out, opts)


def _brain(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    from ...io import read_volume

    d = Path(job.payload["dir"])
    arrays, norms = {}, {}
    ref = None
    for k in BRAIN_KEYS:
        vol = read_volume(d / f"{k}.nii.gz", modality="ct" if k == "ct" else "mri")
        if ref is None:
            ref = vol
        elif vol.shape != ref.shape:
            raise DataError(f"{k}.nii.gz of {job.subject} has shape {vol.shape}, t1 has {ref.shape}", "regenerate the subject")
        arrays[k], norms[k] = normalise(canonical_array(vol), k)
    assert ref is not None
    labels = canonical_array(read_volume(d / "labels.nii.gz"))
    brain = np.isin(np.rint(labels), (2, 3, 6, 7, 8))
    idx = manifest.select_slices(brain, opts.slices or DEFAULT_SLICES, axis=2)
    finding = (d / "finding.txt").read_text(encoding="utf-8").strip() if (d / "finding.txt").is_file() else ""
    recs = write_volume_slices(out, job.subject, job.split, arrays, idx, opts.size, axis=2,
                               meta={"finding": finding, "shape": list(ref.shape)}, norms=norms)
    tumour = np.isin(np.rint(labels), (6, 7, 8))
    for r in recs:
        k = r["meta"]["slice"]
        has = bool(tumour[:, :, k].any())
        r["meta"]["tumour_in_slice"] = has
        r["text"] = f"axial brain slice with {finding}" if has and finding else "axial brain slice without focal lesion"
    return recs


def _chest(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    d = Path(job.payload["dir"])
    row = job.payload["row"]
    img = read_image_2d(d / "0.png")
    x, how = normalise(img, "xray")
    fitted = to_model_size(x[None], opts.size)[0]
    rel = f"slices/{safe_name(job.subject)}/xray.png"
    manifest.save_slice(out, rel, fitted)
    report = (d / "report.txt").read_text(encoding="utf-8").strip()
    labels = {k: v for k, v in row.items() if k not in ("id", "split", "report", "seed")}
    return [{"id": job.subject, "subject": job.subject, "split": job.split, "files": {"xray": rel},
             "text": report, "meta": {"view": "PA", "labels": labels, "intensity": {"xray": how}}}]
