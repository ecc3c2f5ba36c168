"""``medm2g prepare mimic-cxr``: MIMIC-CXR (DICOM) or MIMIC-CXR-JPG with the free-text reports, supplement B/C.1/C.5.

Layout (PhysioNet): ``files/p1X/p1XXXXXXX/s5XXXXXXX/<dicom_id>.dcm`` (``.jpg`` in the JPG release),
reports ``files/p1X/p1XXXXXXX/s5XXXXXXX.txt`` (from ``mimic-cxr-reports.zip``, unpacked into the same
tree or into a sibling ``mimic-cxr-reports/files/``), and ``mimic-cxr-2.0.0-split.csv[.gz]`` (the
official split, ``validate`` -> val). ``mimic-cxr-2.0.0-metadata.csv[.gz]`` gives ``ViewPosition``;
with it, only PA, AP and LATERAL images are kept, at most 3 per study (supplement C.5).

Text: the report's FINDINGS section (``--option section=findings|impression|both``, sectioned as in
the official ``create_section_files.py``: upper-case ``NAME:`` headings); studies without it are
reported as skipped. ``meta.report_clean`` is R2Gen's ``clean_report_mimic_cxr``.
One sample per image; ``subject`` is the patient (``p1XXXXXXX``); a job is a study.
DICOM MONOCHROME1 images are inverted so bone is bright, as in the JPG release.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .. import manifest
from ..text_clean import MEDM2G_MAX_REPORT_LENGTH, R2GEN_MAX_SEQ_LENGTH, clean_report_mimic_cxr
from .base import (
    Job,
    Plan,
    PrepareOptions,
    limit_per_split,
    not_dataset,
    read_image_2d,
    safe_name,
    save_picture,
    split_fields,
)

NAME = "mimic-cxr"
DESCRIPTION = "MIMIC-CXR / MIMIC-CXR-JPG: files/p1X/... + reports + the official split CSV"
SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}
VIEWS = ("PA", "AP", "LATERAL")
SECTIONS = ("findings", "impression", "both")
_HEADING = re.compile(r"^\s*([A-Z][A-Z /&()-]{2,}):", re.M)


def _csv(src: Path, stem: str) -> Path | None:
    for folder in (src, src.parent):
        for suffix in (".csv.gz", ".csv"):
            p = folder / f"mimic-cxr-2.0.0-{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


def sections(report: str) -> dict[str, str]:
    """Upper-case ``HEADING:`` sections of a report (lower-cased names), text whitespace-folded."""
    out: dict[str, str] = {}
    marks = list(_HEADING.finditer(report))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(report)
        out[m.group(1).strip().lower()] = " ".join(report[m.end() : end].split())
    return out


def report_text(report: str, section: str) -> str:
    """The text of ``section`` (findings, impression or both) of one report; empty when absent."""
    s = sections(report)
    f, i = s.get("findings", ""), s.get("impression", "")
    return {"findings": f, "impression": i, "both": " ".join(t for t in (f, i) if t)}[section]


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Index the image tree, the reports and the official split."""
    files = src / "files"
    split_csv = _csv(src, "split")
    if not files.is_dir() or split_csv is None:
        raise not_dataset(src, "MIMIC-CXR", "files/p10..p19/ and mimic-cxr-2.0.0-split.csv.gz (PhysioNet layout)")
    section = str(opts.extra.get("section", "findings")).lower()
    if section not in SECTIONS:
        raise ConfigError(f"--option section={section} is not known", f"use one of: {', '.join(SECTIONS)}")
    split_of = {r["dicom_id"]: SPLIT_NAMES.get(r["split"], "") for r in _read_csv(split_csv)}
    meta_csv = _csv(src, "metadata")
    view_of = {r["dicom_id"]: r.get("ViewPosition", "") for r in _read_csv(meta_csv)} if meta_csv else {}
    report_roots = [files, src / "mimic-cxr-reports" / "files"]
    studies: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for sdir in sorted(files.glob("p1*/p1*/s5*")):
        if not sdir.is_dir():
            continue
        imgs = sorted(p for p in sdir.iterdir() if p.suffix.lower() in (".dcm", ".jpg", ".jpeg", ".png"))
        rel = sdir.relative_to(files)
        rep = next((r / rel.parent / f"{sdir.name}.txt" for r in report_roots if (r / rel.parent / f"{sdir.name}.txt").is_file()), None)
        if rep is None:
            skipped.append(f"{sdir.name}: no report {rel.parent}/{sdir.name}.txt")
            continue
        text = report_text(rep.read_text(encoding="utf-8", errors="replace"), section)
        if not text:
            skipped.append(f"{sdir.name}: report has no {section} section")
            continue
        if view_of:
            imgs = [p for p in imgs if view_of.get(p.stem, "") in VIEWS]
            imgs = sorted(imgs, key=lambda p: (VIEWS.index(view_of[p.stem]), p.name))[:3]
        splits = {split_of.get(p.stem, "") for p in imgs} - {""}
        if not imgs:
            skipped.append(f"{sdir.name}: no {'PA/AP/LATERAL ' if view_of else ''}image")
            continue
        if len(splits) != 1:
            skipped.append(f"{sdir.name}: images {'missing from' if not splits else 'in several splits of'} {split_csv.name}")
            continue
        studies[sdir.name] = {"images": [str(p) for p in imgs], "views": [view_of.get(p.stem, "") for p in imgs],
                              "patient": sdir.parent.name, "text": text, "split": splits.pop()}
    if not studies:
        raise DataError(f"no usable study under '{files}' ({len(skipped)} skipped: {'; '.join(skipped[:2])})",
                        "unpack the images and mimic-cxr-reports.zip into the files/ tree")
    info: dict[str, Any] = {}
    by_split = {sp: [k for k, v in studies.items() if v["split"] == sp] for sp in manifest.SPLITS}
    kept, scaled = limit_per_split(by_split, opts, info)
    jobs = [Job(k, sp, studies[k]) for sp in manifest.SPLITS for k in kept[sp]]
    info.update({
        "name": "mimic-cxr", "release": "dicom" if any(p.endswith(".dcm") for j in jobs for p in j.payload["images"]) else "jpg",
        "modalities": ["xray", "text"], "keys": ["xray", "text"], "flows": ["xray-text", "text-xray"],
        **split_fields(f"official {split_csv.name} (validate -> val); counts are studies",
                       {sp: len(kept[sp]) for sp in manifest.SPLITS}, scaled),
        "preprocessing": {"size": opts.size, "report_section": section,
                          "views": "PA, AP, LATERAL, at most 3 per study" if view_of else "all images (no metadata CSV)",
                          "text": "report section as written; meta.report_clean = R2Gen clean_report_mimic_cxr",
                          "max_report_length": MEDM2G_MAX_REPORT_LENGTH["mimic-cxr"],
                          "r2gen_max_seq_length": R2GEN_MAX_SEQ_LENGTH["mimic-cxr"],
                          "intensity": "X-ray preset (min/max) mapped to [-1, 1]"},
    })
    return Plan(jobs, info, skipped)


def read_cxr(path: Path) -> np.ndarray:
    """A chest X-ray (DICOM or JPG/PNG) as a 2-D float array, bright = dense (MONOCHROME1 inverted)."""
    if path.suffix.lower() != ".dcm":
        return read_image_2d(path)
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for damaged files / missing codecs
        raise DataError(f"DICOM '{path.name}' is not readable ({type(exc).__name__}: {exc})",
                        "re-download the file (JPEG 2000 DICOMs need pylibjpeg or gdcm)") from exc
    if arr.ndim != 2:
        raise DataError(f"DICOM '{path.name}' is not a single greyscale image (shape {arr.shape})", "check the file")
    arr = arr * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write the images of one study, each a sample with the study's report."""
    p = job.payload
    recs = []
    for path, view in zip(p["images"], p["views"], strict=True):
        dicom_id = Path(path).stem
        rel = f"slices/{safe_name(p['patient'])}/{safe_name(job.subject)}/{safe_name(dicom_id)}.png"
        how = save_picture(out, rel, read_cxr(Path(path)), opts.size)
        recs.append({"id": dicom_id, "subject": p["patient"], "split": job.split, "files": {"xray": rel},
                     "text": p["text"], "meta": {"study": job.subject, "view": view,
                                                 "report_clean": clean_report_mimic_cxr(p["text"]),
                                                 "intensity": {"xray": how}}})
    return recs
