"""``medm2g prepare sliver07``: SLIVER07 liver CT (MetaImage), supplement C.2.

Layout: ``liver-orig001.mhd`` + ``.raw`` (and ``liver-seg001.mhd`` reference masks) anywhere under SRC
(archives unpack to ``training-part1/``, ...). The supplement uses the 20 training scans (those with a
``liver-seg`` mask); test scans (021-030, no mask) are reported as skipped unless
``--option include_test=true``.

Every axial slice becomes a sample ("each slice was converted to a PNG image without any additional
preprocessing": 4,159 slices of 512x512 for the 20 scans; pass ``--size 512`` for the paper's size).
``--slices N`` keeps the N slices with the most liver instead. CT intensities go through the CT
window of inference (HU, recorded in ``meta.intensity``). Split: seeded 70/10/20 by scan (the
supplement gives none).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import DataError
from .. import manifest
from . import base
from .base import Job, Plan, PrepareOptions

NAME = "sliver07"
DESCRIPTION = "SLIVER07 liver CT (liver-origNNN.mhd/.raw): the 20 training scans, all axial slices"
_ORIG = re.compile(r"^liver-orig(\d{3})\.mhd$", re.I)


def scan(src: Path, opts: PrepareOptions) -> Plan:
    """Find the scans (and their masks) and split them by scan."""
    if not src.is_dir():
        raise base.not_dataset(src, "SLIVER07", "liver-origNNN.mhd/.raw files (training-part*/ folders)")
    scans: dict[str, dict[str, str]] = {}
    for p in sorted(src.rglob("*.mhd")):
        m = _ORIG.match(p.name)
        if m:
            seg = next(iter(sorted(src.rglob(f"liver-seg{m.group(1)}.mhd"))), None)
            scans[f"liver-{m.group(1)}"] = {"image": str(p), **({"seg": str(seg)} if seg else {})}
    if not scans:
        raise base.not_dataset(src, "SLIVER07", "liver-origNNN.mhd/.raw files (training-part*/ folders)")
    include_test = str(opts.extra.get("include_test", "false")).lower() in ("1", "true", "yes")
    skipped = [] if include_test else [f"{k}: no liver-seg mask (test scan; --option include_test=true keeps it)"
                                       for k, v in scans.items() if "seg" not in v]
    usable = [k for k, v in scans.items() if include_test or "seg" in v]
    if not usable:
        raise DataError(f"'{src}' holds only SLIVER07 test scans (no liver-seg masks)", "add the training parts or pass --option include_test=true")
    info: dict[str, Any] = {}
    keys = base.apply_limit(usable, opts, info)
    split, how = manifest.assign_seeded(keys, (0.7, 0.1, 0.2), seed=opts.seed)
    jobs = [Job(k, split[k], scans[k]) for k in keys]
    info.update({
        "name": "sliver07", "modalities": ["ct"], "keys": ["ct"], "flows": ["text-ct"],
        **base.split_fields(how["rule"] + " by scan (the supplement gives no split)", how["counts"], bool(info.get("notes"))),
        "preprocessing": {"size": opts.size, "axis": "axial (RAS)",
                          "slices": f"{opts.slices} with the most liver" if opts.slices else "all axial slices",
                          "intensity": "CT window of inference (HU) mapped to [-1, 1]",
                          "paper": "512x512 PNG per slice (use --size 512)"},
    })
    return Plan(jobs, info, skipped)


def process(job: Job, out: Path, opts: PrepareOptions) -> list[dict[str, Any]]:
    """Slice one scan."""
    from ...io import read_volume

    vol = read_volume(job.payload["image"], modality="ct")
    if vol.array.ndim != 3:
        raise DataError(f"{Path(job.payload['image']).name} is not a 3-D volume (shape {vol.shape})", "re-download the scan")
    ct, how = base.normalise(base.canonical_array(vol), "ct")
    liver = None
    if "seg" in job.payload:
        seg = read_volume(job.payload["seg"])
        if seg.shape[:3] == vol.shape[:3]:
            liver = base.canonical_array(seg) > 0
    n_axial = ct.shape[2]
    if opts.slices and liver is not None:
        idx = manifest.select_slices(liver, opts.slices, axis=2)
    else:
        idx = list(range(n_axial))[: opts.slices] if opts.slices else list(range(n_axial))
    recs = base.write_volume_slices(out, job.subject, job.split, {"ct": ct}, idx, opts.size, axis=2,
                               meta={"shape": list(vol.shape), "spacing": [round(s, 4) for s in vol.spacing]},
                               norms={"ct": how})
    for r in recs:
        k = r["meta"]["slice"]
        r["meta"]["liver_voxels"] = int(liver[:, :, k].sum()) if liver is not None else None
        r["text"] = "axial abdominal CT slice" + (" showing the liver" if liver is not None and liver[:, :, k].any() else "")
    return recs

