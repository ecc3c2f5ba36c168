"""Writers for the phantom cohorts in the on-disk layouts of the real datasets (IXI, BraTS 2020, IU X-ray).

Every file is written through :mod:`medm2g_cli.io.atomic` into a temporary folder that replaces the
output folder only when the whole cohort is complete. Files are byte-deterministic: NIfTI is gzipped
with ``mtime=0`` and no embedded file name; PNG via pillow carries no timestamp.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...io.atomic import atomic_dir, check_output
from .brain import MRI_CONTRASTS, BrainSubject, generate_brain_subject
from .chest import CHEST_FINDINGS, generate_chest
from .randomise import RandomiseConfig, randomise_subject

BRAIN_LAYOUTS = ("ixi", "brats", "plain")
CHEST_LAYOUTS = ("iu-xray", "plain")
IXI_SITES = ("Guys", "HH", "IOP")
DEFAULT_TUMOUR_RATE = {"ixi": 0.0, "brats": 1.0, "plain": 0.5}
Progress = Callable[[int, int], None] | None


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, descrip: str = "medm2g phantom (synthetic)") -> None:
    """Write a NIfTI-1 file with explicit dtype, sform = qform = ``affine``, unit scaling, gzip mtime 0."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), affine)
    hdr = img.header
    hdr.set_data_dtype(array.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = descrip.encode()[:79]
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    raw = img.to_bytes()
    data = gzip.compress(raw, compresslevel=6, mtime=0) if path.name.endswith(".gz") else raw
    path.write_bytes(data)


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False)
    path.write_bytes(buf.getvalue())


def _subject_seed(seed: int, i: int) -> int:
    # independent, reproducible per-subject seeds (the i-th subject does not depend on n)
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def _brats_seg(labels: np.ndarray) -> np.ndarray:
    seg = np.zeros(labels.shape, np.uint8)
    seg[labels == 6] = 1  # necrotic / non-enhancing core
    seg[labels == 8] = 2  # peritumoural oedema
    seg[labels == 7] = 4  # enhancing tumour
    return seg


def write_brain_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    resolution: int = 2,
    layout: str = "plain",
    tumour_rate: float | None = None,
    overwrite: bool = False,
    progress: Progress = None,
    randomise: int = 0,
    randomise_config: RandomiseConfig | None = None,
) -> dict[str, Any]:
    """Generate ``n`` brain subjects and write them to folder ``out`` in ``layout`` (ixi, brats, plain).

    ``tumour_rate`` defaults to 0 for IXI (healthy volunteers), 1 for BraTS and 0.5 for plain.
    ``randomise`` > 0 (plain layout only) also writes that many domain-randomised renderings of each
    subject (:mod:`.randomise`) as ``sub-NNN-rKK`` next to ``sub-NNN``; ``prepare phantom`` keeps a
    subject and its renderings in one split.
    Returns a summary dict (folder, layout, subjects with ids, files, seeds and findings).
    """
    if layout not in BRAIN_LAYOUTS:
        raise ConfigError(f"unknown brain layout {layout!r}", f"choose one of: {', '.join(BRAIN_LAYOUTS)}")
    if n < 1:
        raise ConfigError(f"--subjects must be at least 1 (got {n})", "pass --subjects N with N >= 1")
    if randomise < 0:
        raise ConfigError(f"--randomise must be 0 or more (got {randomise})", "pass --randomise N with N >= 0")
    if randomise_config is not None and not randomise:
        raise ConfigError("--randomise-keep only applies to randomised renderings", "add --randomise N with N >= 1")
    if randomise and layout != "plain":
        raise ConfigError(f"--randomise needs --layout plain (got --layout {layout})",
                          "use --layout plain: the IXI and BraTS layouts have no place for extra renderings")
    rate = DEFAULT_TUMOUR_RATE[layout] if tumour_rate is None else float(tumour_rate)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--tumour-rate must be between 0 and 1 (got {rate})", "pass a probability such as 0.5")
    out = check_output(out, overwrite)
    rows: list[dict[str, Any]] = []
    with atomic_dir(out, overwrite) as tmp:
        for i in range(n):
            s_seed = _subject_seed(seed, i)
            subj = generate_brain_subject(s_seed, resolution=resolution, tumour_rate=rate)
            files = _write_brain_subject(tmp, subj, i, layout)
            rows.append({"index": i, "subject": files["subject"], "seed": s_seed, "tumour": subj.has_tumour,
                         "finding": subj.finding, "files": files["files"],
                         "pose": subj.meta["pose"], "tumour_info": subj.meta["tumour"]})
            for j in range(1, randomise + 1):
                rows.append(_write_variant(tmp, subj, i, j, randomise_config))
            if progress:
                progress(i + 1, n)
        meta = {"generator": "medm2g phantom brain", "seed": seed, "n": n, "resolution_mm": resolution,
                "layout": layout, "tumour_rate": rate, "subjects": rows}
        if randomise:
            meta["randomise"] = {"per_subject": randomise,
                                 "config": dataclasses.asdict(randomise_config or RandomiseConfig())}
        (tmp / "subjects.json").write_text(json.dumps(meta, indent=2) + "\n")
        if layout == "brats":
            with open(tmp / "name_mapping.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
                            "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"])
                for r in rows:
                    grade = "HGG" if r["tumour"] else "NA"
                    w.writerow([grade, "NA", "NA", f"PHANTOM-{r['seed']}", "NA", r["subject"]])
        else:
            with open(tmp / "subjects.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["subject", "seed", "tumour", "finding"])
                for r in rows:
                    w.writerow([r["subject"], r["seed"], int(r["tumour"]), r["finding"]])
    return {"out": str(out), "layout": layout, "n": n, "seed": seed, "resolution_mm": resolution,
            "tumour_rate": rate, "subjects": [{k: r[k] for k in ("subject", "seed", "tumour", "finding")} for r in rows]}


def _write_variant(root: Path, subj: BrainSubject, i: int, j: int, cfg: RandomiseConfig | None) -> dict[str, Any]:
    """Write the ``j``-th randomised rendering of subject ``i`` (plain layout) and return its row."""
    v_seed = int(np.random.SeedSequence([subj.seed, j]).generate_state(1)[0])  # independent of n and N
    var = randomise_subject(subj, v_seed, cfg)
    files = _write_brain_subject(root, var, i, "plain", key=f"sub-{i + 1:03d}-r{j:02d}")
    return {"index": i, "subject": files["subject"], "seed": v_seed, "tumour": var.has_tumour,
            "finding": var.finding, "files": files["files"], "source": f"sub-{i + 1:03d}",
            "pose": var.meta["pose"], "tumour_info": var.meta["tumour"], "randomisation": var.meta["randomisation"]}


def _write_brain_subject(root: Path, subj: BrainSubject, i: int, layout: str, key: str | None = None) -> dict[str, Any]:
    aff = subj.affine
    files: list[str] = []
    if layout == "ixi":
        key = f"IXI{i + 2:03d}-{IXI_SITES[i % 3]}-{(subj.seed % 9000) + 1000:04d}"
        for c, tag in (("t1", "T1"), ("t2", "T2"), ("pd", "PD")):
            name = f"{key}-{tag}.nii.gz"
            write_nifti(root / name, subj.images[c], aff)
            files.append(name)
        return {"subject": key, "files": files}
    if layout == "brats":
        key = f"BraTS20_Training_{i + 1:03d}"
        d = root / key
        d.mkdir()
        brain = subj.brain_mask()  # BraTS volumes are skull-stripped
        for c in ("t1", "t1ce", "t2", "flair"):
            write_nifti(d / f"{key}_{c}.nii.gz", np.where(brain, subj.images[c], 0).astype(np.int16), aff)
            files.append(f"{key}/{key}_{c}.nii.gz")
        write_nifti(d / f"{key}_seg.nii.gz", _brats_seg(subj.labels), aff)
        files.append(f"{key}/{key}_seg.nii.gz")
        return {"subject": key, "files": files}
    key = key or f"sub-{i + 1:03d}"
    d = root / key
    d.mkdir()
    for c in (*MRI_CONTRASTS, "ct"):
        write_nifti(d / f"{c}.nii.gz", subj.images[c], aff)
        files.append(f"{key}/{c}.nii.gz")
    write_nifti(d / "labels.nii.gz", subj.labels, aff)
    (d / "finding.txt").write_text(subj.finding + "\n")
    files += [f"{key}/labels.nii.gz", f"{key}/finding.txt"]
    return {"subject": key, "files": files}


def write_chest_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    size: int = 256,
    layout: str = "iu-xray",
    overwrite: bool = False,
    progress: Progress = None,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> dict[str, Any]:
    """Generate ``n`` two-view chest studies into ``out`` (``iu-xray``: R2Gen annotation.json + images/; ``plain``).

    Both layouts also write ``labels.csv`` (one row per study: findings and their details, CTR) and the
    ``report`` text. Returns a summary dict.
    """
    if layout not in CHEST_LAYOUTS:
        raise ConfigError(f"unknown chest layout {layout!r}", f"choose one of: {', '.join(CHEST_LAYOUTS)}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n})", "pass --n N with N >= 1")
    out = check_output(out, overwrite)
    n_train = int(round(n * split[0]))
    n_val = int(round(n * split[1]))
    ann: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    rows: list[dict[str, Any]] = []
    with atomic_dir(out, overwrite) as tmp:
        img_root = tmp / "images" if layout == "iu-xray" else tmp
        img_root.mkdir(exist_ok=True)
        for i in range(n):
            s_seed = _subject_seed(seed, i)
            sid = f"CXR{i + 1:04d}_IM-{s_seed % 10000:04d}"
            st = generate_chest(s_seed, size, study_id=sid)
            sp = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            (img_root / sid).mkdir()
            for v, arr in enumerate(st.views):
                _write_png(img_root / sid / f"{v}.png", arr)
            if layout == "plain":
                (img_root / sid / "report.txt").write_text(st.report + "\n")
            ann[sp].append({"id": sid, "report": st.report, "image_path": [f"{sid}/0.png", f"{sid}/1.png"], "split": sp})
            by = {f["name"]: f for f in st.findings}
            row = {"id": sid, "split": sp, "seed": s_seed, "findings": ";".join(st.finding_names()) or "none",
                   "no_finding": int(not st.findings)}
            for name in CHEST_FINDINGS:
                row[name] = int(name in by)
            row["effusion_side"] = by.get("pleural_effusion", {}).get("side", "")
            row["pneumothorax_side"] = by.get("pneumothorax", {}).get("side", "")
            row["consolidation_lobe"] = by.get("consolidation", {}).get("lobe", "")
            nod = by.get("nodule", {})
            row["nodule_location"] = f"{nod['side']} {nod['zone']}" if nod else ""
            row["nodule_size_cm"] = nod.get("size_cm", "")
            row["ctr"] = st.ctr
            row["report"] = st.report
            rows.append(row)
            if progress:
                progress(i + 1, n)
        if layout == "iu-xray":
            (tmp / "annotation.json").write_text(json.dumps(ann, indent=1) + "\n")
        with open(tmp / "labels.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    counts = {k: sum(r[k] for r in rows) for k in ("no_finding", *CHEST_FINDINGS)}
    return {"out": str(out), "layout": layout, "n": n, "seed": seed, "size": size,
            "splits": {k: len(v) for k, v in ann.items()}, "finding_counts": counts}
