"""``medm2g prepare medicat``: MedICaT figures with captions (allenai/medicat), supplement B (text <-> CT).

Layout: the release's figure jsonl (any ``*.jsonl`` in SRC other than ``subcaptions_public.jsonl``;
entries ``{pdf_hash, fig_uri, s2_caption, s2orc_caption, radiology, ...}``) and ``figures/`` holding
``{pdf_hash}_{fig_uri}``.

Filter (``--option filter=``): ``radiology`` (default: entries flagged radiology), ``ct`` (radiology
figures whose caption mentions CT / computed tomography: MedM2G aligns text with CT), or ``all``.
Split: seeded 70/10/20 **by paper** (``pdf_hash``), so figures of one paper never cross splits
(MedM2G's filter and split are not published). Each figure is a sample under the ``ct`` key with its
caption (s2orc caption, else s2 caption) as ``text``; pictures are min/max normalised (they are
8-bit figures, not HU).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError
from .. import manifest
from .base import (
    Job,
    Plan,
    PrepareOptions,
    apply_limit,
    not_dataset,
    read_image_2d,
    safe_name,
    save_picture,
    split_fields,
)

NAME = "medicat"
DESCRIPTION = "MedICaT radiology figures + captions (figure jsonl + figures/), seeded split by paper"
FILTERS = ("radiology", "ct", "all")
_CT = re.compile(r"\bCT\b|computed tomograph", re.I)


def _entries(src: Path) -> tuple[Path, list[dict[str, Any]]]:
    files = sorted(p for p in src.glob("*.jsonl") if p.name != "subcaptions_public.jsonl")
    for p in files:
        rows = []
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p.name}:{n} is not valid JSON", "re-download the MedICaT release") from exc
        if rows and isinstance(rows[0], dict) and "pdf_hash" in rows[0] and "fig_uri" in rows[0]:
            return p, rows
    raise not_dataset(src, "MedICaT", "a figure jsonl (pdf_hash, fig_uri, captions) and figures/")


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Filter figures, check their files, split papers."""
    if not src.is_dir():
        raise not_dataset(src, "MedICaT", "a figure jsonl (pdf_hash, fig_uri, captions) and figures/")
    jsonl, rows = _entries(src)
    flt = str(opts.extra.get("filter", "radiology")).lower()
    if flt not in FILTERS:
        raise ConfigError(f"--option filter={flt} is not known", f"use one of: {', '.join(FILTERS)}")
    figs = src / "figures"
    papers: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    for r in rows:
        caption = " ".join(str(r.get("s2orc_caption") or r.get("s2_caption") or "").split())
        if flt != "all" and not r.get("radiology"):
            continue
        if flt == "ct" and not _CT.search(caption):
            continue
        name = f"{r['pdf_hash']}_{r['fig_uri']}"
        if not caption:
            skipped.append(f"{name}: no caption")
            continue
        if not (figs / name).is_file():
            skipped.append(f"{name}: missing under figures/")
            continue
        papers.setdefault(str(r["pdf_hash"]), []).append({"image": str(figs / name), "name": name, "caption": caption,
                                                          "type": r.get("predicted_type", ""),
                                                          "license": (r.get("oa_info") or {}).get("license", "")})
    if not papers:
        raise DataError(f"no figure in '{jsonl.name}' passes filter={flt} with its image present", "check figures/ or use --option filter=all")
    info: dict[str, Any] = {}
    keys = apply_limit(list(papers), opts, info)
    split, how = manifest.assign_seeded(keys, (0.7, 0.1, 0.2), seed=opts.seed)
    jobs = [Job(k, split[k], {"figures": papers[k]}) for k in keys]
    info.update({
        "name": "medicat", "modalities": ["ct", "text"], "keys": ["ct", "text"], "flows": ["text-ct", "ct-text"],
        **split_fields(how["rule"] + " by paper (pdf_hash)", how["counts"], bool(info.get("notes"))),
        "filter": flt, "source_jsonl": jsonl.name,
        "preprocessing": {"size": opts.size, "intensity": "8-bit figures, min/max mapped to [-1, 1] (not HU)",
                          "text": "s2orc_caption, else s2_caption"},
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write the figures of one paper."""
    recs = []
    for f in job.payload["figures"]:
        stem = safe_name(Path(f["name"]).stem)
        rel = f"slices/{safe_name(job.subject)}/{stem}.png"
        how = save_picture(out, rel, read_image_2d(Path(f["image"])), opts.size)
        recs.append({"id": stem, "subject": job.subject, "split": job.split, "files": {"ct": rel}, "text": f["caption"],
                     "meta": {"figure": f["name"], "predicted_type": f["type"], "license": f["license"],
                              "intensity": {"ct": {**how, "note": "picture min/max, not HU"}}}})
    return recs
