"""Output safety: names from data cannot steer paths out of ``-o``; two processes racing on one output
cannot both succeed; temporaries are unpredictable (a planted symlink is not followed); a prepared
folder is locked while a prepare writes it; a batch that fails midway keeps its run report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import REPO, listing, mri_volume, nifti

from medm2g_cli.data.manifest import save_slice, write_manifest
from medm2g_cli.errors import DataError
from medm2g_cli.io.outputs import safe_component
from medm2g_cli.main import run

HOSTILE = ["../../x", "/abs", "a/b", "..", ".", ".hidden", "ctl\x01\x1b[31mred", "P 1", "P_1", "", "é" * 300]


def _cli(argv: list[str]) -> int:
    try:
        run(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_safe_component_is_one_distinct_component() -> None:
    names = [safe_component(n) for n in HOSTILE]
    for raw, n in zip(HOSTILE, names, strict=True):
        assert n and "/" not in n and "\\" not in n and not n.startswith("."), (raw, n)
        assert n.isascii() and n.isprintable() and len(n) <= 90, (raw, n)
    assert len(set(names)) == len(names)  # "P 1" and "P_1" (and the rest) never share a file
    assert safe_component("IXI002-Guys-0828") == "IXI002-Guys-0828"  # safe names are kept as they are
    assert safe_component("P_1") == "P_1" and safe_component("P 1").startswith("P_1-")


def _cxr14(root: Path, patients: list[str]) -> Path:
    """A tiny ChestX-ray14 copy whose "Patient ID" column holds ``patients`` (the CSV is data: any text)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
             "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"]
    rng = np.random.default_rng(0)
    for k, pid in enumerate(patients):
        name = f"{k:08d}_000.png"
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "images" / name)
        lines.append(f"{name},No Finding,0,{pid},40,M,PA,2500,2048,0.143,0.143,\n")
    (root / "Data_Entry_2017.csv").write_text("".join(lines))
    return root


def test_hostile_subject_ids_never_leave_the_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    ids = ["../../x", "/abs", "a/b", "..", "ctl\x01id", "P 1", "P_1", "ok"]
    src = _cxr14(work / "src", ids)
    before = listing(tmp_path)
    out = work / "out"
    code = _cli(["prepare", "chestxray14", str(src), "-o", str(out), "--size", "16", "--json"])
    assert code == 0, capsys.readouterr().err
    created = sorted(set(listing(tmp_path)) - set(before))
    outside = [p for p in created if not p.startswith("a/b/out")]
    assert outside == [], f"written outside -o: {outside}"
    assert not Path("/abs").exists()
    folders = [p.name for p in (out / "slices").iterdir()]
    assert len(folders) == len(ids)  # one folder per patient: "P 1" and "P_1" stay apart
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["subject"] for s in samples) == sorted(ids)  # the ids themselves are kept as data


def test_save_slice_refuses_a_path_out_of_the_folder_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "d" / "prep"
    root.mkdir(parents=True)
    with pytest.raises(DataError):
        save_slice(root, "slices/../../../x/t1.png", np.zeros((4, 4)))
    assert listing(tmp_path) == ["d", "d/prep"]


def test_planted_symlink_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "prep"
    (root / "slices" / "s").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("slices/s/t1_000.png.part", "samples.jsonl.part", "dataset.json.part"):
        (root / name).symlink_to(victim)
    save_slice(root, "slices/s/t1_000.png", np.zeros((8, 8)))
    write_manifest(root, {"name": "x"}, [{"id": "a", "subject": "s", "split": "train",
                                          "files": {"t1": "slices/s/t1_000.png"}, "text": None}])
    assert victim.read_text() == "precious"
    assert (root / "slices" / "s" / "t1_000.png").stat().st_size > 0 and not (root / "samples.jsonl").is_symlink()
    assert (root / "samples.jsonl.part").is_symlink()  # someone else's file: left alone


_RACER = r"""
import sys, time
from pathlib import Path
from medm2g_cli.errors import OutputError
from medm2g_cli.io.atomic import atomic_dir, atomic_path
dest, sync, tag, kind = sys.argv[1:5]
try:
    with (atomic_path(dest, overwrite=False) if kind == "file" else atomic_dir(dest, overwrite=False)) as tmp:
        (tmp if kind == "file" else tmp / "who").write_text(tag)
        Path(sync, tag).touch()  # past the existence check, output ready: wait for the other process
        while not Path(sync, "go").exists():
            time.sleep(0.01)
except OutputError as exc:
    print(exc.one_line())
    sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_two_processes_racing_on_one_output_cannot_both_succeed(tmp_path: Path, kind: str) -> None:
    dest, sync = tmp_path / ("o.nii.gz" if kind == "file" else "series"), tmp_path / "sync"
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(dest), str(sync), tag, kind], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("p1", "p2")]
    deadline = time.time() + 60
    while not ((sync / "p1").exists() and (sync / "p2").exists()):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    (sync / "go").touch()
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 3], results
    loser = next(r for r in results if r[0] == 3)
    assert "already exists" in loser[1]
    winner = "p1" if results[0][0] == 0 else "p2"
    assert (dest if kind == "file" else dest / "who").read_text() == winner  # the winner's output, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, "sync"])  # no temporaries left


_HOLDER = r"""
import sys
from pathlib import Path
from medm2g_cli.data.adapters import get_adapter
from medm2g_cli.data.adapters.base import PrepareOptions, run_prepare
src, out, sync = sys.argv[1:4]

def progress(done, total, name):
    if done >= 1:  # one subject written: hold the folder until the test says go
        Path(sync, "holding").touch()
        while not Path(sync, "go").exists():
            import time; time.sleep(0.01)

run_prepare(get_adapter("phantom"), src, out, PrepareOptions(size=16, slices=2), progress)
"""


def test_two_prepares_into_one_folder_the_second_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medm2g_cli.data.manifest import load_manifest
    from medm2g_cli.data.phantom.layouts import write_brain_cohort

    src, out, sync = tmp_path / "raw", tmp_path / "prep", tmp_path / "sync"
    write_brain_cohort(src, 1)
    sync.mkdir()
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(src), str(out), str(sync)], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (sync / "holding").exists():
            assert time.time() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        code = _cli(["prepare", "phantom", str(src), "-o", str(out), "--size", "16", "--slices", "2"])
        err = capsys.readouterr().err
        assert code == 2 and "another medm2g prepare is writing" in err, err
    finally:
        (sync / "go").touch()
        first.wait(120)
    assert first.returncode == 0, first.communicate()
    _, samples = load_manifest(out)
    assert len(samples) == 2


def test_a_batch_that_fails_midway_keeps_the_report_of_finished_cases(tmp_path: Path, rel_weights: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cases, out = tmp_path / "cases", tmp_path / "out"
    cases.mkdir()
    out.mkdir()  # the user's own folder: outputs go in, but it must not become "medm2g's" (replaceable)
    (out / "notes.txt").write_text("mine")
    nifti(cases / "a.nii.gz", mri_volume())
    (cases / "b.nii.gz").write_bytes(b"\x1f\x8b not really gzip")  # listed as a case, fails when read
    code = _cli(["translate", "t1-t2", str(cases), "-o", str(out), "--weights", str(rel_weights), "--steps", "2",
                 "--device", "cpu"])
    assert code == 2, capsys.readouterr().err
    rep = json.loads((out / "run_report.json").read_text())
    assert [Path(c["input"]).name for c in rep["cases"]] == ["a.nii.gz"]
    assert (out / "a.nii.gz").is_file() and "b.nii.gz" in rep["error"]
    assert not (out / ".medm2g").exists() and (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_medm2g_folders_and_empty_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t1 = nifti(tmp_path / "t1.nii.gz", mri_volume())
    series, empty = tmp_path / "series", tmp_path / "empty"
    empty.mkdir()
    for out in (series, series, empty):  # written, then replaced (it carries the marker); an empty folder
        argv = ["convert", str(t1), str(out), "--format", "dicom", "--modality", "mri", "--overwrite"]
        assert _cli(argv) == 0, capsys.readouterr().err
        assert (out / ".medm2g").is_file() and len(list(out.glob("*.dcm"))) == mri_volume().shape[2]
