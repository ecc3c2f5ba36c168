"""Run configs from YAML (examples/pretrain_tiny.yaml), command-line precedence, and latent caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prepared_fixture import make_prepared

from medm2g_cli.errors import ConfigError
from medm2g_cli.training import datasets, flows, runner, stages

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_cli_wins(tmp_path):
    cfg = runner.load_config_file(REPO / "examples" / "pretrain_tiny.yaml")
    req = runner.RunRequest(run_dir=tmp_path / "r", data=[tmp_path / "mine"])
    req.loop.steps = 7
    req = runner.apply_config(req, cfg, explicit={"data", "steps"})
    assert req.preset == "tiny" and req.stages == list(stages.STAGES)
    assert req.flows == ["text-xray", "text-ct", "ct-mri"] and req.flow_schedule == "chain"
    assert req.data == [tmp_path / "mine"] and req.loop.steps == 7  # given on the command line
    assert req.loop.batch_size == 8 and req.loop.adam_betas == (0.9, 0.999) and req.options.lambda_1 == 0.005
    flows.parse_flows(req.flows)


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        runner.load_config_file(bad)
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown train setting"):
        runner.apply_config(runner.RunRequest(run_dir=tmp_path, data=[]), runner.load_config_file(bad), set())
    bad.write_text("preset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid"):
        runner.load_config_file(bad)


def test_cached_latents_equal_fresh_ones(tmp_path):
    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    data = datasets.TrainingData([make_prepared(tmp_path / "d", n=16, kinds=("xray",))])
    model = MedM2G.from_preset("tiny")
    job = stages.build_stage("diffusion", model, data, stages.StageOptions(cache_latents=True, targets=("xray",)))
    batch = job.collate([job.dataset[i] for i in range(4)])["parts"]["xray<text"]
    first = job._latents(batch["a"], "xray", batch["index"])
    assert len(job._latent_cache) == 4
    again = job._latents(torch.zeros_like(batch["a"]), "xray", batch["index"])  # served from the cache
    fresh = model.encode_image("xray", batch["a"])
    assert torch.equal(first, again) and torch.allclose(first, fresh)
