"""Interruptions and concurrency of batch ``translate`` (real processes, tiny model, 2 steps).

SIGINT/SIGTERM mid-batch: finished cases stay intact, no partial (or hidden temporary) file is left,
and ``--continue`` finishes the rest with results identical to an uninterrupted run. Three processes
sharing one weights folder, writing different outputs, all succeed and equal a serial run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import REPO, mri_volume, nifti, tree_hash

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
N_CASES = 4


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medm2g_cli", *args]


def _translate(inp: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return _cli("translate", "t1-t2", str(inp), "-o", str(out), "--weights", str(weights), "--steps", "2",
                "--device", "cpu", "--batch-size", "2", *extra)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cases")
    for i in range(N_CASES):
        nifti(d / f"case{i}.nii.gz", mri_volume(seed=i, shape=(16, 16, 8)))
    return d


@pytest.fixture(scope="module")
def reference(cases: Path, rel_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    # The uninterrupted serial run, in the same environment as the runs it is compared with: CPU
    # kernels sum in another order with another thread count, so "identical" is per thread setting.
    subprocess.run(_translate(cases, out, rel_weights), env=ENV, cwd=REPO, check=True, capture_output=True,
                   timeout=300)
    return out


def _voxels(p: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(p)).dataobj)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_batch_then_continue(sig: int, cases: Path, reference: Path, rel_weights: Path,
                                        tmp_path: Path) -> None:
    before = tree_hash(cases)
    out = tmp_path / "out"
    # A shell may start background jobs with SIGINT ignored; give the child the default, as a terminal would.
    proc = subprocess.Popen(_translate(cases, out, rel_weights), env=ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(list(out.glob("case*.nii.gz"))) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.startswith("error:")] == \
        ["error: interrupted — finished outputs are kept; rerun with --continue to finish the rest"]
    # besides finished cases: medm2g's folder marker and the run report of the finished cases
    done = sorted(p.name for p in out.iterdir() if p.name not in (".medm2g", "run_report.json"))
    assert json.loads((out / "run_report.json").read_text())["cases"]
    assert all(n.startswith("case") and n.endswith(".nii.gz") for n in done), f"partial files left: {done}"
    assert 1 <= len(done) < N_CASES
    for n in done:  # finished cases are complete and exactly what an uninterrupted run writes
        np.testing.assert_array_equal(_voxels(out / n), _voxels(reference / n))
    r = subprocess.run(_translate(cases, out, rel_weights, "--continue"), env=ENV, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"skipped {len(done)} finished case(s)" in r.stderr
    for i in range(N_CASES):
        np.testing.assert_array_equal(_voxels(out / f"case{i}.nii.gz"), _voxels(reference / f"case{i}.nii.gz"))
    assert tree_hash(cases) == before


def test_three_processes_share_one_weights_folder(cases: Path, reference: Path, rel_weights: Path,
                                                  tmp_path: Path) -> None:
    weights_before = tree_hash(rel_weights)
    procs = []
    for k in range(3):
        inp = cases / f"case{k}.nii.gz"
        procs.append(subprocess.Popen(_translate(inp, tmp_path / f"p{k}.nii.gz", rel_weights), env=ENV, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for k in range(3):
        np.testing.assert_array_equal(_voxels(tmp_path / f"p{k}.nii.gz"), _voxels(reference / f"case{k}.nii.gz"))
    assert tree_hash(rel_weights) == weights_before
