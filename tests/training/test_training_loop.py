"""The generic loop: deterministic data order, checkpoint layout, exact resume, EMA (toy job)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from medm2g_cli.training import checkpoints, config, loop, run_folder

torch.set_num_threads(1)


class ToyJob:
    """A small regression job that follows the TrainJob protocol."""

    name = "toy"

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(40, 6, generator=g)
        y = x @ torch.randn(6, 1, generator=g)
        self.dataset = TensorDataset(x, y)
        self.val_dataset = TensorDataset(x[:8], y[:8])
        torch.manual_seed(1)
        self.module = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.module.parameters())

    def collate(self, items):
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    def compute(self, batch, step):
        x, y = batch
        x = x + 0.01 * torch.randn_like(x)  # consumes the (re-seeded) global RNG
        mse = torch.nn.functional.mse_loss(self.module(x), y)
        return {"loss": mse, "mse": mse}

    def before_step(self, step: int) -> None:
        pass

    def save_model(self, path: Path) -> None:
        from safetensors.torch import save_model

        path.mkdir(parents=True, exist_ok=True)
        save_model(self.module, str(path / "model.safetensors"))


def _run(run_dir: Path, cfg: config.LoopConfig, stop_after=None, resume=False):
    run_dir.mkdir(exist_ok=True)
    job = ToyJob()
    acc = loop.make_accelerator(cfg, cpu=True)
    ckpt = None
    if resume:
        ckpt, _ = checkpoints.prepare_resume(run_dir)
    res = loop.run_phase(job, cfg, acc, run_dir, resume_from=ckpt, stop_after=stop_after)
    return job, res


def test_sampler_covers_each_epoch_once_across_ranks():
    n, bs = 10, 2
    seen = []
    for rank in range(2):
        s = loop.StepBatchSampler(n, bs, seed=3, start_step=0, total_steps=5, rank=rank, world=2)
        seen += [i for b in s for i in b]
    assert len(seen) == 20 and sorted(seen) == sorted(list(range(10)) * 2)
    s1 = loop.StepBatchSampler(n, bs, seed=3, start_step=2, total_steps=5)
    s0 = loop.StepBatchSampler(n, bs, seed=3, start_step=0, total_steps=5)
    assert list(s1) == list(s0)[2:]


def test_loss_falls_and_log_written(tmp_path):
    cfg = config.LoopConfig(steps=60, batch_size=8, lr=3e-2, seed=0)
    _, res = _run(tmp_path, cfg)
    assert res.final["loss"] < 0.5 * res.first["loss"]
    lines = [json.loads(x) for x in (tmp_path / run_folder.METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 61))
    assert {"loss", "loss/mse", "lr", "samples_per_s"} <= set(lines[0])


@pytest.mark.parametrize("ema,accum,schedule", [(False, 1, "constant"), (True, 2, "cosine")])
def test_resume_is_exact(tmp_path, ema, accum, schedule):
    cfg = config.LoopConfig(steps=12, batch_size=4, lr=1e-2, seed=5, checkpoint_every=4, ema=ema, grad_accum=accum,
                          warmup_steps=2, lr_schedule=schedule)
    full, _ = _run(tmp_path / "a", cfg)
    # Interrupted after 6 steps: the last complete checkpoint is step 4.
    _run(tmp_path / "b", cfg, stop_after=6)
    assert [s for s, _ in checkpoints.checkpoint_dirs(tmp_path / "b")] == [4]
    assert (tmp_path / "b" / "checkpoint-4" / "model" / "model.safetensors").exists()
    resumed, res = _run(tmp_path / "b", cfg, resume=True)
    assert res.start_step == 4
    for p, q in zip(full.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(p, q)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / run_folder.METRICS_FILE).read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path):
    cfg = config.LoopConfig(steps=10, batch_size=4, lr=1e-2, warmup_steps=2, lr_schedule="cosine")
    _run(tmp_path, cfg)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / run_folder.METRICS_FILE).read_text().splitlines()]
    # lr logged after each step's scheduler update: step k trains at lambda(k-1), logs lambda(k)
    assert lrs[0] == pytest.approx(1e-2)  # warmup over 2 steps: 0.5, 1.0
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[4] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 3 / 8)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_bad_settings_refused():
    from medm2g_cli.errors import ConfigError

    with pytest.raises(ConfigError):
        config.LoopConfig(steps=0).validate()
    with pytest.raises(ConfigError):
        config.LoopConfig(mixed_precision="fp8").validate()
    with pytest.raises(ConfigError):
        config.LoopConfig(lr_schedule="linear-ish").validate()
