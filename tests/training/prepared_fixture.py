"""A minimal prepared folder in the manifest format (dataset.json, samples.jsonl, 16-bit PNG slices).

Images depend on every word of their finding, so alignment has something to learn; used until a
test needs the full phantom cohort.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

FINDING = ["cardiomegaly", "pleural effusion", "pneumothorax", "nodule"]
SIDE = ["left", "right"]
SIZE = ["small", "large"]
ZONE = ["upper", "lower"]


def finding(k: int) -> str:
    """32 distinct findings (4 x 2 x 2 x 2); image k depends on every part of text k."""
    return f"{SIZE[(k // 8) % 2]} {SIDE[(k // 4) % 2]} {ZONE[(k // 16) % 2]} zone {FINDING[k % 4]}"


def make_prepared(root: Path, n: int = 48, size: int = 16, kinds=("xray", "ct", "mri")) -> Path:
    """A minimal prepared folder (dataset.json, samples.jsonl, 16-bit PNG slices) whose images
    depend on the finding text, so alignment has something to learn."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        k = i % 32
        rec = {"id": f"s{i:03d}", "subject": f"p{i:03d}", "split": "train" if i < n - 8 else "val",
               "files": {}, "text": finding(k)}
        for m in kinds:
            f, side, big, zone = k % 4, (k // 4) % 2, (k // 8) % 2, (k // 16) % 2
            img = 0.5 + (0.2 + 0.2 * big) * np.sin(2 * np.pi * ((f + 1) * xx + zone * yy) + np.pi * side
                                                     + (0.3 if m == "ct" else 0))
            img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
            keys = ["t1", "t2"] if m == "mri" else [m]
            for key in keys:
                rel = f"slices/{rec['id']}_{key}.png"
                (root / "slices").mkdir(exist_ok=True)
                arr = (img if key != "t2" else 1 - img) * 65535
                Image.fromarray(arr.astype(np.uint16)).save(root / rel)
                rec["files"][key] = rel
        lines.append(json.dumps(rec))
    (root / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (root / "dataset.json").write_text(json.dumps({"name": "test-phantom", "modalities": list(kinds)}))
    return root
