"""Same input and options -> a byte-identical prepared folder: run twice, or killed (SIGKILL) and resumed.

``prepare ixi`` registers T2 and PD to T1 (SimpleITK Mattes MI with random metric sampling), the step
that used to differ between runs: ITK reads seed 0 as "seed from the wall clock", and its threads
sum partial histograms in varying order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medm2g_cli.main import run

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--size", "16", "--slices", "1", "--option", "reg_sampling=0.01"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _prepare(src: Path, out: Path) -> None:
    try:
        run(["prepare", "ixi", str(src), "-o", str(out), *ARGS])
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.fixture(scope="module")
def ixi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medm2g_cli.data.phantom.layouts import write_brain_cohort

    src = tmp_path_factory.mktemp("repro") / "ixi"
    write_brain_cohort(src, 2, seed=1, layout="ixi")
    return src


@pytest.fixture(scope="module")
def once(ixi: Path) -> Path:
    out = ixi.parent / "once"
    _prepare(ixi, out)
    return out


def test_two_runs_are_byte_identical(ixi: Path, once: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _prepare(ixi, again)
    a, b = _files(once), _files(again)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []  # samples.jsonl (registration metric, intensity ranges) included
    assert json.loads(a["dataset.json"])["seed"] == 0


_KILLED = r"""
import os, signal, sys
from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare

def progress(done, total, name):
    if name:  # the first subject is written and recorded: die as a power cut would
        os.kill(os.getpid(), signal.SIGKILL)

run_prepare(get_adapter("ixi"), sys.argv[1], sys.argv[2],
            PrepareOptions(size=16, slices=1, extra={"reg_sampling": "0.01"}), progress)
"""


def test_killed_and_resumed_equals_one_run(ixi: Path, once: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _KILLED, str(ixi), str(out)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not (out / "dataset.json").exists() and len(list((out / ".parts").glob("*.jsonl"))) == 1
    _prepare(ixi, out)
    assert _files(out) == _files(once)
