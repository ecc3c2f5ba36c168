"""``medm2g prepare chestxray14``: NIH ChestX-ray14 (PNG + ``Data_Entry_2017.csv``), supplement C.2/C.5.

Layout: ``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``) next to ``images/`` (the twelve
``images_NNN.tar.gz`` unpacked; the Kaggle copy's ``images_NNN/images/`` folders are found too).
Quirks handled: the header's bracketed names contain commas (``OriginalImage[Width,Height]``) and
end with an empty column; ``Patient Gender`` is ``Patient Sex`` in some copies; a few PNGs are
not mode L (converted explicitly).

Split: seeded 70/10/20 **by patient** (the supplement's ratio; images of one patient never cross
splits), or ``--option official_split=true``: ``test_list.txt`` is the test split and
``train_val_list.txt`` is split by patient into train/val (seeded, 7:1). ``--limit`` counts patients.

Each image is a sample: ``xray`` and, as ``text``, its finding labels as a prompt (``"No Finding"``
or e.g. ``"Cardiomegaly, Effusion"``); ``meta`` has labels, view, age, sex and follow-up.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ...errors import DataError
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

NAME = "chestxray14"
DESCRIPTION = "NIH ChestX-ray14: Data_Entry_2017.csv + images/, seeded 70/10/20 by patient (or the official lists)"
CSV_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")


def read_data_entry(path: Path) -> list[dict[str, str]]:
    """Rows of Data_Entry_2017.csv keyed by repaired column names.

    Header cells split inside brackets (``OriginalImage[Width`` + ``Height]``) are merged back, and the
    values of such a column are joined with a comma; the empty trailing column is dropped.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"'{path}' is empty", "re-download Data_Entry_2017.csv")
    names: list[tuple[str, int]] = []  # (name, number of raw cells)
    cells = rows[0]
    i = 0
    while i < len(cells):
        name, span = cells[i].strip(), 1
        while "[" in name and "]" not in name and i + span < len(cells):
            name += "," + cells[i + span].strip()
            span += 1
        names.append((name, span))
        i += span
    out = []
    for raw in rows[1:]:
        if not raw or not any(c.strip() for c in raw):
            continue
        rec, j = {}, 0
        for name, span in names:
            if name:
                rec[name] = ",".join(raw[j : j + span]).strip()
            j += span
        out.append(rec)
    need = ("Image Index", "Finding Labels", "Patient ID")
    if out and not all(k in out[0] for k in need):
        raise DataError(f"'{path}' lacks the columns {', '.join(need)} (has {', '.join(n for n, _ in names if n)})",
                        "use the Data_Entry_2017.csv of the NIH release")
    return out


def _image_index(src: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in [src / "images", *sorted(src.glob("images_*/images")), *sorted(src.glob("images_*"))]:
        if folder.is_dir():
            for p in folder.iterdir():
                if p.suffix.lower() == ".png":
                    found.setdefault(p.name, p)
    return found


def _list(path: Path) -> set[str]:
    if not path.is_file():
        raise DataError(f"--option official_split=true needs '{path.name}' in the dataset folder",
                        "copy train_val_list.txt and test_list.txt from the NIH release next to the CSV")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Read the label CSV, match images, split patients."""
    csv_path = next((src / n for n in CSV_NAMES if (src / n).is_file()), None)
    if csv_path is None or not src.is_dir():
        raise not_dataset(src, "ChestX-ray14", "Data_Entry_2017.csv and images/ (images_001..012 unpacked)")
    rows = read_data_entry(csv_path)
    images = _image_index(src)
    if not images:
        raise DataError(f"'{src}' has {csv_path.name} but no PNGs under images/", "unpack images_001.tar.gz ... images_012.tar.gz")
    by_patient: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    for r in rows:
        name = r["Image Index"]
        if name not in images:
            skipped.append(f"{name}: listed in {csv_path.name} but not found under images/")
            continue
        pid = f"{int(r['Patient ID']):08d}" if r["Patient ID"].isdigit() else r["Patient ID"]
        by_patient.setdefault(pid, []).append({
            "image": str(images[name]), "name": name, "labels": [x for x in r["Finding Labels"].split("|") if x],
            "view": r.get("View Position", ""), "age": r.get("Patient Age", ""),
            "sex": r.get("Patient Gender", r.get("Patient Sex", "")), "follow_up": r.get("Follow-up #", "")})
    info: dict[str, Any] = {}
    patients = apply_limit(list(by_patient), opts, info)
    official = str(opts.extra.get("official_split", "false")).lower() in ("1", "true", "yes")
    if official:
        test_names = _list(src / "test_list.txt")
        _list(src / "train_val_list.txt")
        test_p = [p for p in patients if any(e["name"] in test_names for e in by_patient[p])]
        rest = [p for p in patients if p not in set(test_p)]
        tv, _ = manifest.assign_seeded(rest, (7 / 8, 1 / 8, 0.0), seed=opts.seed)
        split = {**{p: ("val" if tv.get(p) == "val" else "train") for p in rest}, **{p: "test" for p in test_p}}
        rule = f"official test_list.txt; train_val_list.txt split 7:1 into train/val by patient (seed {opts.seed})"
    else:
        split, how = manifest.assign_seeded(patients, (0.7, 0.1, 0.2), seed=opts.seed)
        rule = how["rule"] + " by patient"
    counts = {sp: sum(1 for p in patients if split[p] == sp) for sp in manifest.SPLITS}
    jobs = [Job(p, split[p], {"images": by_patient[p]}) for p in patients]
    info.update({
        "name": "chestxray14", "modalities": ["xray", "text"], "keys": ["xray", "text"], "flows": ["text-xray"],
        **split_fields(rule, counts, bool(info.get("notes"))), "split_unit": "patient",
        "preprocessing": {"size": opts.size, "intensity": "X-ray preset (min/max) mapped to [-1, 1]; every PNG converted to L",
                          "text": "finding labels joined with ', ' (the label prompt)"},
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Write every image of one patient."""
    recs = []
    for e in job.payload["images"]:
        stem = Path(e["name"]).stem
        rel = f"slices/{safe_name(job.subject)}/{safe_name(stem)}.png"
        how = save_picture(out, rel, read_image_2d(Path(e["image"])), opts.size)
        recs.append({"id": stem, "subject": job.subject, "split": job.split, "files": {"xray": rel},
                     "text": ", ".join(e["labels"]) or "No Finding",
                     "meta": {"labels": e["labels"], "view": e["view"], "age": e["age"], "sex": e["sex"],
                              "follow_up": e["follow_up"], "intensity": {"xray": how}}})
    return recs
