"""Explicit diffusion parts (``stage_options.pairs``): several pixel-aligned sources train one target."""

from __future__ import annotations

import pytest
import torch
from prepared_fixture import make_prepared

from medm2g_cli.engine import MedM2G
from medm2g_cli.errors import ConfigError
from medm2g_cli.training import config, datasets, stages

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> datasets.TrainingData:
    return datasets.TrainingData([make_prepared(tmp_path_factory.mktemp("prep") / "phantom", n=24)])


def test_parse_pair_and_refusals():
    assert stages.parse_pair("pd<t1+t2") == ("pd", ["t1", "t2"])
    assert stages.parse_pair(" CT < t1 ") == ("ct", ["t1"])
    for bad in ("pd", "pd<", "pd<foo", "xray<text+ct"):
        with pytest.raises(ConfigError):
            stages.parse_pair(bad)


def test_multi_source_part_feeds_both_sources_and_trains_the_target_unet(data):
    model = MedM2G.from_preset("tiny", conditioning="concat")
    opts = config.StageOptions(pairs=("t2<t1+ct", "xray<text"))
    job = stages.build_stage("diffusion", model, data, opts, steps=1)
    assert set(job.dataset.parts) == {"t2<t1+ct", "xray<text"}
    item = job.dataset.parts["t2<t1+ct"][0]
    assert item["a_key"] == "t2" and item["src_keys"] == "t1+ct" and tuple(item["srcs"].shape[:2]) == (2, 1)
    batch = job.collate([job.dataset[i] for i in range(4)])
    out = job.compute(batch, 0)
    assert {"eps_t2_from_t1_ct", "eps_xray_from_text"} <= set(out)
    out["loss"].backward()
    # the MRI UNet's input convolution sees the concat slots: both sources must reach it
    w = model.parts["unet_mri"].conv_in.weight.grad
    c = w.shape[1] // (1 + model.config.concat_slots)
    assert w is not None and float(w[:, c:2 * c].abs().sum()) > 0 and float(w[:, 2 * c:3 * c].abs().sum()) > 0


def test_sources_matter_to_the_loss(data):
    """The same noise and timesteps with the sources swapped for zeros give another loss."""
    model = MedM2G.from_preset("tiny", conditioning="concat")
    job = stages.build_stage("diffusion", model, data, config.StageOptions(pairs=("t2<t1+ct",), cond_drop_prob=0.0), steps=1)
    batch = job.collate([job.dataset[i] for i in range(4)])
    with torch.no_grad():
        torch.manual_seed(0)
        a = float(job.compute(batch, 0)["loss"])
        batch["parts"]["t2<t1+ct"]["srcs"] = torch.zeros_like(batch["parts"]["t2<t1+ct"]["srcs"]) - 1
        torch.manual_seed(0)
        b = float(job.compute(batch, 0)["loss"])
    assert a != b


def test_pairs_option_on_the_command_line(tmp_path):
    import json

    from medm2g_cli.main import run

    prep = make_prepared(tmp_path / "prep", n=12)

    def code(argv):
        try:
            run(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    base = ["pretrain", "--preset", "tiny", "--data", str(prep), "--stages", "diffusion", "--steps", "1",
            "--batch-size", "2", "--cpu"]
    assert code([*base, "--pairs", "ct<foo", "-o", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    assert code([*base, "--pairs", "t2<t1", "-o", str(tmp_path / "run")]) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["stage_options"]["pairs"] == ["t2<t1"]
