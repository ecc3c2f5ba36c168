"""Checkpoints: every file hashed in trainer_state.json and verified on resume; a damaged newest
checkpoint falls back to the previous intact one with one warning (and the resumed run still ends
bit-identical); no pickle in a checkpoint folder is ever run."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from test_training_loop import _run

from medm2g_cli.errors import ConfigError, MedM2GWarning
from medm2g_cli.training import checkpoints, config

torch.set_num_threads(1)


def _cfg() -> config.LoopConfig:
    return config.LoopConfig(steps=12, batch_size=4, lr=1e-2, seed=5, checkpoint_every=4, warmup_steps=2,
                           lr_schedule="cosine", plateau_factor=0.5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[torch.Tensor]:
    """Weights of an uninterrupted run."""
    full, _ = _run(tmp_path_factory.mktemp("full"), _cfg())
    return [p.detach().clone() for p in full.module.parameters()]


def _interrupted(run_dir: Path) -> Path:
    _run(run_dir, _cfg(), stop_after=10)  # checkpoints 4 and 8, killed at step 10
    assert [s for s, _ in checkpoints.checkpoint_dirs(run_dir)] == [4, 8]
    return run_dir


def test_checkpoint_hashes_every_file_and_holds_no_pickled_objects(tmp_path: Path) -> None:
    run = _interrupted(tmp_path / "r")
    ck = run / "checkpoint-8"
    files = json.loads((ck / checkpoints.TRAINER_STATE).read_text())["files"]
    on_disk = sorted(p.relative_to(ck).as_posix() for p in ck.rglob("*") if p.is_file() and p.name != checkpoints.TRAINER_STATE)
    assert sorted(files) == on_disk and {"state/optimizer.bin", "state/schedulers.pt"} <= set(files)
    assert all(checkpoints.sha256_file(ck / rel) == digest for rel, digest in files.items())
    # Accelerate's custom-object files are loaded with weights_only=False: none are written.
    assert not list(ck.rglob("custom_checkpoint_*"))


def _flip(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))


DAMAGE = {
    "optimizer-bit-flip": lambda ck: _flip(ck / "state" / "optimizer.bin"),
    "weights-truncated": lambda ck: (ck / "state" / "weights.safetensors").write_bytes(
        (ck / "state" / "weights.safetensors").read_bytes()[:100]),
    "scheduler-missing": lambda ck: (ck / "state" / "schedulers.pt").unlink(),
    "trainer-state-torn": lambda ck: (ck / checkpoints.TRAINER_STATE).write_text('{"global_step": 8, "pha'),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back(tmp_path: Path, reference: list[torch.Tensor], damage: str) -> None:
    run = _interrupted(tmp_path / "r")
    DAMAGE[damage](run / "checkpoint-8")
    with pytest.warns(MedM2GWarning, match="checkpoint-8") as rec:
        ckpt, meta = checkpoints.prepare_resume(run)
    assert len([w for w in rec if issubclass(w.category, MedM2GWarning)]) == 1
    assert ckpt == run / "checkpoint-4" and meta is not None and meta["global_step"] == 4
    with pytest.warns(MedM2GWarning):
        resumed, res = _run(run, _cfg(), resume=True)
    assert res.start_step == 4
    for p, q in zip(reference, resumed.module.parameters(), strict=True):
        assert torch.equal(p, q)


def test_no_intact_checkpoint_is_refused(tmp_path: Path) -> None:
    run = _interrupted(tmp_path / "r")
    for ck in ("checkpoint-4", "checkpoint-8"):
        _flip(run / ck / "state" / "optimizer.bin")
    with pytest.warns(MedM2GWarning), pytest.raises(ConfigError, match="no intact checkpoint"):
        checkpoints.prepare_resume(run)


class _Payload:
    """Unpickling this creates ``marker``: proof that a checkpoint's pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _rehash(ck: Path) -> None:
    """Rewrite the recorded hashes, as someone who tampers with a checkpoint would."""
    meta = json.loads((ck / checkpoints.TRAINER_STATE).read_text())
    meta["files"] = checkpoints.file_hashes(ck, checkpoints.TRAINER_STATE)
    (ck / checkpoints.TRAINER_STATE).write_text(json.dumps(meta))


@pytest.mark.parametrize("target", ["state/custom_checkpoint_0.pkl", "state/schedulers.pt", "state/optimizer.bin"])
def test_pickle_in_a_checkpoint_never_runs(tmp_path: Path, target: str) -> None:
    run = _interrupted(tmp_path / "r")
    marker = tmp_path / "pwned"
    ck = run / "checkpoint-8"
    torch.save(_Payload(marker), str(ck / target))
    _rehash(ck)
    with pytest.raises(ConfigError, match="checkpoint-8"):
        _run(run, _cfg(), resume=True)
    assert not marker.exists(), "a pickle from the checkpoint was executed"


def test_pretrain_resume_skips_a_damaged_checkpoint_with_one_warning_line(tmp_path: Path) -> None:
    """The real command: a tiny model, the newest checkpoint damaged, ``--resume``: one ``warning:`` line
    on stderr and the run continues from the previous checkpoint."""
    import os
    import shutil
    import subprocess
    import sys

    from prepared_fixture import make_prepared

    data = make_prepared(tmp_path / "prep" / "phantom")
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "medm2g_cli.main", "pretrain", "--preset", "tiny", "--data", str(data), "-o",
            str(run), "--stages", "alignment", "--steps", "3", "--checkpoint-every", "1", "--batch-size", "4", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    repo = Path(__file__).resolve().parents[2]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [s for s, _ in checkpoints.checkpoint_dirs(run)] == [1, 2]
    # As if killed after checkpoint-2 was written but with its optimizer state damaged on disk.
    shutil.rmtree(run / "model")
    (run / "summary.json").unlink()
    _flip(run / "checkpoint-2" / "state" / "optimizer.bin")
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    warnings = [ln for ln in resumed.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint 'checkpoint-2'" in warnings[0], resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"].endswith("checkpoint-1")
