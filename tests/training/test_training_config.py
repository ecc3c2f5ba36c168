"""Run configs from YAML (examples/pretrain_tiny.yaml), command-line precedence, and latent caching."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from prepared_fixture import make_prepared

from medm2g_cli.errors import ConfigError
from medm2g_cli.training import config, datasets, flows, losses, stages

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_cli_wins(tmp_path):
    cfg = config.build_config(REPO / "examples" / "pretrain_tiny.yaml", data=[tmp_path / "mine"], train={"steps": 7})
    assert cfg.preset == "tiny" and cfg.stages == config.STAGES
    assert cfg.flows == ("text-xray", "text-ct", "ct-mri") and cfg.flow_schedule == "chain"
    assert cfg.data == (tmp_path / "mine",) and cfg.loop.steps == 7  # given on the command line
    assert cfg.loop.batch_size == 8 and cfg.loop.adam_betas == (0.9, 0.999) and cfg.options.lambda_1 == 0.005
    flows.parse_flows(cfg.flows)


def test_precedence_defaults_then_file_then_options(tmp_path):
    """One builder, three layers: dataclass defaults < the config file < options that were given."""
    f = tmp_path / "run.yaml"
    f.write_text("preset: tiny\ndata: [a]\nseed: 9\nflows: [text-xray]\n"
                 "train: {batch_size: 8, lr: 0.002, ema: true}\nstage_options: {pairs: ['ct<t1'], cache_latents: false}\n")
    defaults = config.TrainConfig()
    from_file = config.build_config(f)
    assert defaults.loop.batch_size == 4 and defaults.preset is None  # layer 1
    assert (from_file.preset, from_file.data, from_file.flows) == ("tiny", (Path("a"),), ("text-xray",))  # layer 2
    assert (from_file.loop.batch_size, from_file.loop.lr, from_file.loop.seed, from_file.loop.ema) == (8, 0.002, 9, True)
    assert from_file.loop.steps == defaults.loop.steps and from_file.options.pairs == ("ct<t1",)
    given = config.build_config(f, preset="small", data=[Path("b")], flows="ct-mri", pairs="pd<t1+t2", cache_latents=True,
                                cpu=True, train={"batch_size": 2, "seed": 1, "ema": False, "lr": None})
    assert (given.preset, given.data, given.flows, given.cpu) == ("small", (Path("b"),), ("ct-mri",), True)  # layer 3
    assert (given.loop.batch_size, given.loop.seed) == (2, 1)
    assert given.options.pairs == ("pd<t1+t2",) and given.options.cache_latents
    assert given.loop.lr == 0.002 and given.loop.ema  # None / False mean "not given": the file's value stays
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.loop.steps = 3  # type: ignore[misc]


def test_finetune_precedence_task_then_file_then_options(tmp_path):
    task = config.build_config(task="report-generation", dataset_name="iu-xray")
    assert (task.task, task.stages, task.loop.batch_size, task.options.max_report_length) == (
        "report-generation", ("diffusion",), 16, 45)
    f = tmp_path / "ft.yaml"
    f.write_text("train: {batch_size: 4}\nstage_options: {max_report_length: 30}\n")
    from_file = config.build_config(f, task="report", dataset_name="iu-xray")
    assert (from_file.loop.batch_size, from_file.loop.lr, from_file.options.max_report_length) == (4, 1e-3, 30)
    given = config.build_config(f, task="report", dataset_name="iu-xray", max_report_length=20, train={"batch_size": 2})
    assert (given.loop.batch_size, given.options.max_report_length) == (2, 20)
    flows_given = config.build_config(f, task="report", dataset_name="iu-xray", flows="text-xray")
    assert flows_given.stages == ("multiflow",) and flows_given.flows == ("text-xray",) and flows_given.options.pairs is None


def test_extends_deep_merges_a_base(tmp_path):
    (tmp_path / "base.yaml").write_text("preset: tiny\ntrain: {batch_size: 8, lr: 0.001}\nmodel: {image: {image_size: 64}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "stage.yaml").write_text("extends: ../base.yaml\ntrain: {lr: 0.005}\nmodel: {scheduler: {v_prediction: [ct]}}\n")
    merged = config.load_config_file(tmp_path / "sub" / "stage.yaml")
    assert merged == {"preset": "tiny", "train": {"batch_size": 8, "lr": 0.005},
                      "model": {"image": {"image_size": 64}, "scheduler": {"v_prediction": ["ct"]}}}
    (tmp_path / "base.yaml").write_text("extends: sub/stage.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        config.load_config_file(tmp_path / "sub" / "stage.yaml")


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        config.load_config_file(bad)
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown train setting"):
        config.build_config(bad)
    bad.write_text("preset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid"):
        config.load_config_file(bad)


def test_stage_option_defaults_are_the_losses_constants():
    """config.py stays torch-free, so it spells the loss constants out; they must not drift."""
    assert (config.StageOptions().tau, config.StageOptions().lambda_1) == (losses.DEFAULT_TAU, losses.LAMBDA_1)


def test_cached_latents_equal_fresh_ones(tmp_path):
    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    data = datasets.TrainingData([make_prepared(tmp_path / "d", n=16, kinds=("xray",))])
    model = MedM2G.from_preset("tiny")
    job = stages.build_stage("diffusion", model, data, config.StageOptions(cache_latents=True, targets=("xray",)))
    batch = job.collate([job.dataset[i] for i in range(4)])["parts"]["xray<text"]
    first = job._latents(batch["a"], "xray", batch["index"])
    assert len(job._latent_cache) == 4
    again = job._latents(torch.zeros_like(batch["a"]), "xray", batch["index"])  # served from the cache
    fresh = model.encode_image("xray", batch["a"])
    assert torch.equal(first, again) and torch.allclose(first, fresh)


def test_command_line_flags_override_the_file(tmp_path, capsys):
    """The same precedence through ``medm2g pretrain``: a given flag wins, an absent one keeps the file's value."""
    import json

    from cli_helper import cli

    f = tmp_path / "run.yaml"
    f.write_text("preset: tiny\nstages: [diffusion]\ntrain: {batch_size: 8, lr: 0.002, ema: true}\n"
                 "stage_options: {pairs: ['ct<t1']}\n")
    code, out, err = cli(capsys, "pretrain", "--config", str(f), "--batch-size", "2", "--pairs", "pd<t1+t2",
                         "--print-config")
    assert code == 0, err
    printed = json.loads(out)
    assert (printed["train"]["batch_size"], printed["train"]["lr"], printed["train"]["ema"]) == (2, 0.002, True)
    assert printed["stage_options"]["pairs"] == ["pd<t1+t2"] and printed["stages"] == ["diffusion"]
