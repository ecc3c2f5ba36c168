"""``medm2g prepare iu-xray``: IU X-ray (Open-i) studies with their reports, supplement C.1.

Two variants are recognised:

* R2Gen's preprocessed folder: ``annotation.json`` (``{"train": [...], "val": [...], "test": [...]}``,
  entries ``{"id", "report", "image_path": ["<id>/0.png", "<id>/1.png"], "split"}``) and ``images/``.
  R2Gen's split is used as it is (the split rate the supplement follows).
* Kaggle "chest-xrays-indiana-university": ``indiana_reports.csv`` + ``indiana_projections.csv`` +
  ``images/images_normalized/*.png``. There is no official split: studies (``uid``) are split with a
  seed 70/10/20 and dataset.json says the split is **not** R2Gen's (numbers are not comparable).
  The report is the findings section (``--option section=findings|impression|both``); studies
  without it are reported as skipped.

One sample per study: ``xray`` is the first (frontal) view, ``xray_lateral`` the second when present.
``text`` is the report as distributed; ``meta.report_clean`` is R2Gen's ``clean_report_iu_xray``
of it. Pictures of any PIL mode (the Kaggle PNGs are not all mode L) are converted explicitly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError
from .. import manifest
from ..text_clean import MEDM2G_MAX_REPORT_LENGTH, R2GEN_MAX_SEQ_LENGTH, clean_report_iu_xray
from .base import (
    Job,
    Plan,
    PrepareOptions,
    apply_limit,
    limit_per_split,
    not_dataset,
    read_image_2d,
    safe_name,
    save_picture,
    split_fields,
)

NAME = "iu-xray"
DESCRIPTION = "IU X-ray: R2Gen annotation.json + images/ (R2Gen split) or the Kaggle CSV variant (seeded split)"
SECTIONS = ("findings", "impression", "both")


def _text_doc() -> dict[str, Any]:
    return {"text": "report as distributed; meta.report_clean = R2Gen clean_report_iu_xray",
            "max_report_length": MEDM2G_MAX_REPORT_LENGTH["iu-xray"], "r2gen_max_seq_length": R2GEN_MAX_SEQ_LENGTH["iu-xray"]}


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Recognise the variant and list studies with their split."""
    if (src / "annotation.json").is_file():
        return _scan_r2gen(src, opts)
    if (src / "indiana_reports.csv").is_file() and (src / "indiana_projections.csv").is_file():
        return _scan_kaggle(src, opts)
    raise not_dataset(src, "IU X-ray", "annotation.json + images/ (R2Gen) or indiana_reports.csv + "
                      "indiana_projections.csv + images/ (Kaggle)")


def _scan_r2gen(src: Path, opts: PrepareOptions) -> Plan:
    try:
        ann = json.loads((src / "annotation.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{src / 'annotation.json'}' is not valid JSON", "re-download R2Gen's iu_xray folder") from exc
    if not isinstance(ann, dict) or not all(isinstance(ann.get(k), list) for k in ("train", "val", "test")):
        raise DataError(f"'{src / 'annotation.json'}' is not R2Gen's format (a train/val/test object)",
                        "use R2Gen's data/iu_xray/annotation.json")
    img_root = src / "images"
    entries: dict[str, dict[str, Any]] = {}
    by_split: dict[str, list[str]] = {sp: [] for sp in manifest.SPLITS}
    skipped: list[str] = []
    for sp in manifest.SPLITS:
        for e in ann[sp]:
            sid, paths = str(e.get("id", "")), e.get("image_path") or []
            if not sid or not paths:
                skipped.append(f"{sid or '?'}: entry without id or image_path")
                continue
            missing = [p for p in paths if not (img_root / p).is_file()]
            if missing:
                skipped.append(f"{sid}: image {missing[0]} is missing under images/")
                continue
            entries[sid] = {"images": [str(img_root / p) for p in paths], "report": str(e.get("report", "")),
                            "rel": list(paths)}
            by_split[sp].append(sid)
    info: dict[str, Any] = {}
    kept, scaled = limit_per_split(by_split, opts, info)
    jobs = [Job(sid, sp, entries[sid]) for sp in manifest.SPLITS for sid in kept[sp]]
    info.update({
        "name": "iu-xray", "variant": "r2gen", "modalities": ["xray", "text"], "keys": ["xray", "xray_lateral", "text"],
        "flows": ["xray-text", "text-xray"],
        **split_fields("R2Gen annotation.json split (comparable with R2Gen-protocol papers)",
                       {sp: len(kept[sp]) for sp in manifest.SPLITS}, scaled),
        "comparable_with_r2gen": True,
        "preprocessing": {"size": opts.size, "views": "image_path[0] -> xray, image_path[1] -> xray_lateral",
                          "intensity": "X-ray preset (min/max) mapped to [-1, 1]", **_text_doc()},
    })
    return Plan(jobs, info, skipped)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _find_images(src: Path) -> Path:
    for cand in (src / "images" / "images_normalized", src / "images_normalized", src / "images"):
        if cand.is_dir():
            return cand
    raise DataError(f"'{src}' has the Kaggle IU X-ray CSVs but no images/images_normalized/ folder",
                    "unpack the image folder next to the CSVs")


def _scan_kaggle(src: Path, opts: PrepareOptions) -> Plan:
    section = str(opts.extra.get("section", "findings")).lower()
    if section not in SECTIONS:
        raise ConfigError(f"--option section={section} is not known", f"use one of: {', '.join(SECTIONS)}")
    reports = _read_csv(src / "indiana_reports.csv")
    projections = _read_csv(src / "indiana_projections.csv")
    for name, rows, cols in (("indiana_reports.csv", reports, ("uid", "findings", "impression")),
                             ("indiana_projections.csv", projections, ("uid", "filename", "projection"))):
        if rows and not all(c in rows[0] for c in cols):
            raise DataError(f"'{src / name}' lacks the columns {', '.join(cols)} (has {', '.join(rows[0])})",
                            "use the CSVs of the Kaggle chest-xrays-indiana-university dataset")
    img_dir = _find_images(src)
    views: dict[str, dict[str, list[str]]] = {}
    for r in projections:
        views.setdefault(r["uid"], {}).setdefault(r["projection"].strip().lower(), []).append(r["filename"])
    entries: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for r in reports:
        uid = r["uid"].strip()
        findings, impression = (r.get("findings") or "").strip(), (r.get("impression") or "").strip()
        text = {"findings": findings, "impression": impression,
                "both": " ".join(t for t in (findings, impression) if t)}[section]
        v = views.get(uid, {})
        frontal, lateral = sorted(v.get("frontal", [])), sorted(v.get("lateral", []))
        if not text:
            skipped.append(f"{uid}: no {section} text")
            continue
        if not frontal:
            skipped.append(f"{uid}: no frontal image in indiana_projections.csv")
            continue
        files = [frontal[0]] + lateral[:1]
        missing = [f for f in files if not (img_dir / f).is_file()]
        if missing:
            skipped.append(f"{uid}: image {missing[0]} is missing under {img_dir.name}/")
            continue
        entries[uid] = {"images": [str(img_dir / f) for f in files], "report": text, "rel": files,
                        "mesh": r.get("MeSH", ""), "problems": r.get("Problems", "")}
    info: dict[str, Any] = {}
    keys = apply_limit(list(entries), opts, info)
    split, how = manifest.assign_seeded(keys, (0.7, 0.1, 0.2), seed=opts.seed)
    jobs = [Job(k, split[k], entries[k]) for k in keys]
    info.update({
        "name": "iu-xray", "variant": "kaggle-csv", "modalities": ["xray", "text"], "keys": ["xray", "xray_lateral", "text"],
        "flows": ["xray-text", "text-xray"],
        **split_fields(f"non-R2Gen split: {how['rule']} by study uid -- not comparable with R2Gen numbers",
                       how["counts"], bool(info.get("notes"))),
        "comparable_with_r2gen": False,
        "preprocessing": {"size": opts.size, "report_section": section,
                          "views": "first Frontal -> xray, first Lateral -> xray_lateral",
                          "intensity": "X-ray preset (min/max) mapped to [-1, 1]", **_text_doc()},
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write the views of one study and its record."""
    p = job.payload
    files: dict[str, str] = {}
    norms: dict[str, Any] = {}
    folder = safe_name(job.subject)
    for key, path in zip(("xray", "xray_lateral"), p["images"], strict=False):
        rel = f"slices/{folder}/{key}.png"
        norms[key] = save_picture(out, rel, read_image_2d(Path(path)), opts.size)
        files[key] = rel
    report = " ".join(p["report"].split())
    meta: dict[str, Any] = {"source_images": p["rel"], "report_clean": clean_report_iu_xray(report),
                            "intensity": norms, "view": "frontal"}
    for k in ("mesh", "problems"):
        if p.get(k):
            meta[k] = p[k]
    return [{"id": job.subject, "subject": job.subject, "split": job.split, "files": files, "text": report, "meta": meta}]
