"""`medm2g prepare` killed with SIGKILL mid-run, then rerun: it resumes and matches an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import head, nifti

from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare


def _brats(root, n=12):
    for i in range(1, n + 1):
        s = f"BraTS20_Training_{i:03d}"
        base = head(shape=(48, 48, 40), z_range=(5, 35), peak_z=20, seed=i)
        for k, c in enumerate(("t1", "t1ce", "t2", "flair", "seg")):
            nifti(root / s / f"{s}_{c}.nii.gz", (base * (1 + k) if c != "seg" else base > 900).astype(np.int16))
    return root


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    src = _brats(tmp_path / "MICCAI_BraTS2020_TrainingData")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medm2g_cli", "prepare", "brats2020", str(src), "-o", str(out), "--size", "32", "--slices", "12"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        parts = list((out / ".parts").glob("*.jsonl")) if (out / ".parts").is_dir() else []
        if len(parts) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "dataset.json").exists(), "the run finished before it could be killed"
    done_before = len(list((out / ".parts").glob("*.jsonl")))
    assert 2 <= done_before < 12
    res = run_prepare(get_adapter("brats2020"), src, out, PrepareOptions(size=32, slices=12))
    assert res.resumed == done_before and res.done == 12 - done_before and res.failed == []
    ref = tmp_path / "clean"
    run_prepare(get_adapter("brats2020"), src, ref, PrepareOptions(size=32, slices=12))
    a, b = _files(out), _files(ref)
    assert sorted(a) == sorted(b) and not any(k.endswith(".part") or ".parts" in k for k in a)
    assert a == b  # manifest, dataset.json and every slice byte-identical
