"""The package installs anywhere: a wheel (not editable) in a fresh environment, a model installed
with `medm2g weights install` into MEDM2G_HOME, and an inference command run from another folder,
offline, with no path into the source checkout.

The fresh environment is a venv without pip that sees the already-installed dependencies (torch,
diffusers, ...) through a .pth line pointing at the test interpreter's site-packages; .pth files
inside that folder (e.g. an editable install of medm2g) are not processed, so `medm2g_cli` can only
come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from infer_helpers import oblique_nifti

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _sh(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res


def test_wheel_runs_outside_the_checkout(tmp_path: Path, tiny_weights: Path) -> None:
    # 1. build the wheel from a copy of what the sdist would hold (no weights/, no tests/), offline
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "medm2g_cli", src / "medm2g_cli", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         str(src), "-w", str(dist)])
    (wheel,) = dist.glob("medm2g-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith(("weights/", "tests/")) for n in names)

    # 2. a fresh venv; dependencies visible through a .pth line, medm2g only from the wheel
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    purelib = Path(_sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _sh([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)])

    # 3. from another folder, offline, nothing from the checkout on the path
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDM2G_WEIGHTS", "MEDM2G_HOME")}
    env.update(MEDM2G_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    where = _sh([str(py), "-c", "import medm2g_cli; print(medm2g_cli.__file__)"], cwd=work, env=env).stdout.strip()
    assert where.startswith(str(venv)), where
    medm2g = str(venv / "bin" / "medm2g")
    inp, _ = oblique_nifti(work / "t1.nii", crop=3)

    # no model yet: a clear error, not a path into a checkout
    res = subprocess.run([medm2g, "translate", "mri2ct", str(inp), "-o", "sct.nii.gz"], capture_output=True,
                         text=True, cwd=work, env=env, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"error: no model is installed in {tmp_path / 'home'}"), res.stderr
    assert not (work / "sct.nii.gz").exists()

    _sh([medm2g, "weights", "install", str(tiny_weights)], cwd=work, env=env)
    _sh([medm2g, "translate", "mri2ct", "t1.nii", "-o", "sct.nii.gz", "--steps", "2", "--device", "cpu"],
        cwd=work, env=env)
    assert (work / "sct.nii.gz").is_file()
    rep = json.loads((work / "sct_run.json").read_text())
    assert rep["weights"]["path"] == str(tmp_path / "home" / "models" / "tiny")
