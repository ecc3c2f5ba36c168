"""Each stage's loss falls on the engine's tiny preset; alignment makes paired-text retrieval beat chance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prepared_fixture import make_prepared

from medm2g_cli.engine import MedM2G
from medm2g_cli.training import config, datasets, flows, interfaces, loop, stages

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> datasets.TrainingData:
    return datasets.TrainingData([make_prepared(tmp_path_factory.mktemp("prep") / "phantom", n=40)])


def _train(job, tmp_path: Path, steps: int, lr: float, bs: int = 8) -> list[dict[str, float]]:
    cfg = config.LoopConfig(steps=steps, batch_size=bs, lr=lr, seed=1)
    records: list[dict[str, float]] = []

    class Keep(interfaces.NullReporter):
        def update(self, record):
            records.append(record)

    loop.run_phase(job, cfg, loop.make_accelerator(cfg, cpu=True), tmp_path, reporter=Keep())
    return records


def _mean(records, key, sl):
    vals = [r[key] for r in records[sl] if key in r]
    return sum(vals) / len(vals)


def _fixed_batch_loss(job, batch) -> float:
    """Mean loss of one fixed batch over fixed seeds (noise, timesteps, dropout, augmentations)."""
    total = 0.0
    with torch.no_grad():
        for seed in range(3):
            for step in (0, 1):  # interleaved flows: both flows
                torch.manual_seed(seed)
                total += float(job.compute(batch, step)["loss"])
    return total / 6


# multiflow trains only the cross-guidance parameters (context encoders, conditioners, attn2) on
# top of frozen, here untrained, UNets, so its loss can fall less than the others.
@pytest.mark.parametrize("stage,steps,lr,ratio", [("autoencoders", 20, 3e-3, 0.85), ("alignment", 30, 1e-3, 0.85),
                                                  ("diffusion", 20, 3e-3, 0.85), ("multiflow", 40, 1e-2, 0.93)])
def test_each_stage_loss_falls(stage, steps, lr, ratio, data, tmp_path):
    model = MedM2G.from_preset("tiny")
    fl = flows.parse_flows("text-xray,ct-mri")
    job = stages.build_stage(stage, model, data, config.StageOptions(), flows=fl, schedule="interleaved", steps=steps)
    batch = job.collate([job.dataset[i] for i in range(16)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = _fixed_batch_loss(job, batch)
    recs = _train(job, tmp_path, steps, lr)
    last = _fixed_batch_loss(job, batch)
    print(f"{stage}: fixed-batch loss {first:.4f} -> {last:.4f}; training loss "
          f"{_mean(recs, 'loss', slice(0, 6)):.4f} -> {_mean(recs, 'loss', slice(-6, None)):.4f}")
    assert last < ratio * first, (stage, first, last)
    # Only the stage's trainable components moved; the text encoder (the centre) never does.
    trainable = {id(p) for p in job.trainable_parameters()}
    for n, p in model.named_parameters():
        if id(p) not in trainable:
            assert torch.equal(p, before[n]), f"{stage} changed frozen parameter {n}"


def test_alignment_retrieval_beats_chance(data, tmp_path):
    model = MedM2G.from_preset("tiny")
    ds = datasets.PairSet(data.with_keys("xray", "text")[:32], "xray", "text", model.image_size)
    x = torch.stack([ds[i]["a"] for i in range(32)])
    texts = [ds[i]["b"] for i in range(32)]
    assert len(set(texts)) == 32

    def top1() -> float:
        model.eval()
        with torch.no_grad():
            sim = model.embed_image("xray", x) @ model.embed_text(texts).T
        model.train()
        return (sim.argmax(1) == torch.arange(32)).float().mean().item()

    chance = 1 / 32
    before = top1()
    job = stages.build_stage("alignment", model, data, config.StageOptions())
    _train(job, tmp_path, 100, 1e-3, bs=16)
    after = top1()
    print(f"paired-text retrieval top-1 among 32: {before:.3f} -> {after:.3f} (chance {chance:.3f})")
    assert after > 10 * chance


def test_chain_schedule_freezes_earlier_sides(data):
    model = MedM2G.from_preset("tiny")
    fl = flows.parse_flows("text-xray,text-ct")
    job = stages.build_stage("multiflow", model, data, config.StageOptions(), flows=fl, schedule="chain", steps=4)
    job.before_step(2)  # second block: text-ct, text already trained by text-xray
    assert job._frozen_now == {"text"}
    batch = job.collate([job.dataset[i] for i in range(4)])
    terms = job.compute(batch, 2)
    assert set(terms) == {"loss", "flow_text-ct_text", "flow_text-ct_ct"}
    terms["loss"].backward()
    # The frozen text side gets no gradient even though it guides the CT branch; CT's side does.
    assert all(p.grad is None for p in model.component("context_encoder_text").parameters())
    assert any(p.grad is not None for p in model.component("context_encoder_ct").parameters())
    job.before_step(0)
    assert job._frozen_now == set()
    assert all(p.requires_grad for p in model.component("context_encoder_text").parameters())


def test_missing_modality_is_refused_before_training(tmp_path):
    from medm2g_cli.errors import DataError

    xray_only = datasets.TrainingData([make_prepared(tmp_path / "x", n=16, kinds=("xray",))])
    model = MedM2G.from_preset("tiny")
    with pytest.raises(DataError, match="ct"):
        stages.build_stage("diffusion", model, xray_only, config.StageOptions(targets=("ct",)))
