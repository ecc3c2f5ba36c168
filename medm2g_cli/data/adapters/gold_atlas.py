"""``medm2g prepare gold-atlas-pelvis``: Gold Atlas male pelvis (MR T1/T2 + CT, DICOM), supplement C.4.

Layout: one folder (any name) per patient archive, holding ``.dcm`` files at any depth. Series are
identified from DICOM tags only, never folder names: files are grouped by ``SeriesInstanceUID``;
``Modality`` MR/CT separates MRI from CT; an MR series is T2 or T1 by ``SeriesDescription`` (``T2``
/ ``T1`` as a token), else by ``EchoTime`` (>= 60 ms: T2). With several CT series, the one described
as deformed/registered (the CT deformably registered to the MR) is taken. The patient is the
``PatientID`` tag. RTSTRUCT and other non-image objects are ignored.

Split: patients with T1, T2 and CT, sorted by PatientID, the first 15 split 9/2/4 (the paper does
not list its 15; the chosen IDs are recorded in dataset.json). Preprocessing: T1 and CT registered
to T2 (affine, SimpleITK Mattes MI; ``--option register=false`` resamples by the headers), CT in HU
from ``RescaleSlope``/``RescaleIntercept``; the 90 axial slices with the most body (CT > -500 HU).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import DataError
from .. import manifest
from . import base
from .base import Job, Plan, PrepareOptions

NAME = "gold-atlas-pelvis"
DESCRIPTION = "Gold Atlas male pelvis (DICOM): series by tags, 15 patients 9/2/4, T1/CT registered to T2"
SPLIT_RULE = (9, 2, 4)
DEFAULT_SLICES = 90
_DEFORMED = re.compile(r"deform|regist|\bdir\b|sct|to.?mr", re.I)


def _first_header(path: Path) -> Any:
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True)


def classify(series: list[Any]) -> tuple[dict[str, Any], str]:
    """Pick T1, T2 and CT among a patient's series (``SeriesInfo``) by their tags; (choice, patient ID)."""
    got: dict[str, list[tuple[Any, Any]]] = {"t1": [], "t2": [], "ct": []}
    pid = ""
    for s in series:
        ds = _first_header(s.files[0])
        pid = pid or str(ds.get("PatientID", "") or "")
        mod = s.modality.upper()
        desc = s.description.upper()
        if mod == "CT":
            got["ct"].append((s, ds))
        elif mod == "MR":
            tokens = set(re.findall(r"T[12]", re.sub(r"[^A-Z0-9]+", " ", desc)))
            if tokens == {"T2"} or (not tokens and float(ds.get("EchoTime", 0) or 0) >= 60):
                got["t2"].append((s, ds))
            elif tokens == {"T1"} or (not tokens and 0 < float(ds.get("EchoTime", 0) or 0) < 60):
                got["t1"].append((s, ds))
    choice: dict[str, Any] = {}
    for k, items in got.items():
        if not items:
            continue
        if k == "ct":
            deformed = [x for x in items if _DEFORMED.search(x[0].description)]
            items = deformed or items
        choice[k] = max(items, key=lambda x: x[0].n_files)[0]  # the fullest series of its kind
    return choice, pid


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Scan each patient folder's DICOM headers and classify its series."""
    from ...io.dicom import scan_series

    folders = sorted(p for p in src.iterdir() if p.is_dir()) if src.is_dir() else []
    patients: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for d in folders:
        series = scan_series(d)
        if not series:
            continue
        choice, pid = classify(series)
        pid = pid or d.name
        missing = [k.upper() for k in ("t1", "t2", "ct") if k not in choice]
        if missing:
            found = "; ".join(f"{s.modality} '{s.description}'" for s in series)
            skipped.append(f"{pid} ({d.name}): no {', '.join(missing)} series among {found}")
            continue
        if pid in patients:
            skipped.append(f"{pid} ({d.name}): PatientID already seen in another folder")
            continue
        patients[pid] = {"dir": str(d), **{k: {"uid": s.uid, "description": s.description} for k, s in choice.items()}}
    if not patients and not skipped:
        raise base.not_dataset(src, "Gold Atlas pelvis", "one folder per patient holding DICOM MR (T1, T2) and CT series")
    if not patients:
        raise DataError(f"no patient in '{src}' has T1, T2 and CT series ({skipped[0]})", "check the download is complete")
    info: dict[str, Any] = {}
    keys = base.apply_limit(list(patients), opts, info)
    split, how = manifest.assign_ordered(keys, SPLIT_RULE)
    register = str(opts.extra.get("register", "true")).lower() not in ("0", "false", "no")
    jobs = [Job(k, split[k], {**patients[k], "register": register}) for k in sorted(split)]
    info.update({
        "name": "gold-atlas-pelvis", "modalities": ["mri", "ct"], "keys": ["t2", "t1", "ct"], "flows": ["t2-ct", "t1-ct", "mri-ct"],
        **base.split_fields(how["rule"].replace("sorted order", "PatientID order"), how["counts"], how["scaled"]),
        "patients_used": {k: split[k] for k in sorted(split)},
        "series": {k: {c: patients[k][c]["description"] for c in ("t1", "t2", "ct")} for k in sorted(split)},
        "preprocessing": {"size": opts.size, "axis": "axial (RAS)", "slices_per_subject": opts.slices or DEFAULT_SLICES,
                          "slice_rule": "most body (CT > -500 HU)",
                          "registration": "T1 and CT -> T2, affine (SimpleITK Mattes MI)" if register else "none (headers)",
                          "intensity": "MRI: percentile preset; CT: HU window of inference; both mapped to [-1, 1]"},
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Read the three series, register T1 and CT to T2, slice."""
    from ...io import read_volume
    from ...io.registration import register, resample_to

    p = job.payload
    d = Path(p["dir"])
    t2 = read_volume(d, series=p["t2"]["uid"], modality="mri")
    t1 = read_volume(d, series=p["t1"]["uid"], modality="mri")
    ct = read_volume(d, series=p["ct"]["uid"], modality="ct")
    metrics = {}
    if p["register"]:
        r1 = register(t2, t1, "affine", sampling=0.05, seed=opts.seed)
        rc = register(t2, ct, "affine", sampling=0.05, seed=opts.seed)
        t1r, ctr = r1.resampled, rc.resampled
        metrics = {"t1": r1.metric, "ct": rc.metric}
    else:
        t1r, ctr = resample_to(t1, t2), resample_to(ct, t2, default_value=-1024.0)
    raw_ct = base.canonical_array(ctr)
    arrays, norms = {}, {}
    for k, v in (("t2", t2), ("t1", t1r)):
        arrays[k], norms[k] = base.normalise(base.canonical_array(v), k)
    arrays["ct"], norms["ct"] = base.normalise(raw_ct, "ct")
    idx = manifest.select_slices(raw_ct > -500, opts.slices or DEFAULT_SLICES, axis=2)
    meta = {"series": {k: p[k]["description"] for k in ("t1", "t2", "ct")}, "registration_metric": metrics,
            "shape": list(t2.shape)}
    return base.write_volume_slices(out, job.subject, job.split, arrays, idx, opts.size, axis=2, meta=meta,
                               norms=norms)

