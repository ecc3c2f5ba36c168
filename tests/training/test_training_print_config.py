"""``--print-config``: the resolved configuration, printed without data or -o, is a config that
reproduces the run it describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helper import cli
from prepared_fixture import make_prepared
from safetensors.torch import load_file

torch.set_num_threads(1)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {f"{f.relative_to(model_dir)}:{k}": v for f in sorted(model_dir.rglob("*.safetensors"))
            for k, v in load_file(str(f)).items()}


def test_printed_config_round_trips_into_the_same_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_prepared(tmp_path / "prep", n=12)
    opts = ["--preset", "tiny", "--data", str(data), "--stages", "diffusion", "--pairs", "t2<t1+ct,text<xray",
            "--steps", "2", "--batch-size", "2", "--total-batch-size", "4", "--seed", "5", "--lr", "3e-4"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(capsys, "pretrain", *opts, "--print-config")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    printed = json.loads(out)
    assert printed["train"]["grad_accum"] == 2 and printed["resolved"]["batch"]["total_batch"] == 4
    assert printed["stage_options"]["pairs"] == ["t2<t1+ct", "text<xray"]
    assert [s["stage"] for s in printed["resolved"]["stages"]] == ["diffusion"]  # --data: parts resolved
    cfg = tmp_path / "printed.json"
    cfg.write_text(out)
    code, again, err = cli(capsys, "pretrain", "--config", str(cfg), "--print-config")
    assert code == 0, err
    assert json.loads(again) == printed
    # the run the printed config describes is the run the options describe
    assert cli(capsys, "pretrain", *opts, "-o", str(tmp_path / "a"), "--json")[0] == 0
    assert cli(capsys, "pretrain", "--config", str(cfg), "-o", str(tmp_path / "b"), "--json")[0] == 0
    la = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and len(la) == 2
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_finetune_print_config_needs_no_data_and_describes_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "finetune", "mri-synthesis", "--print-config")
    assert code == 0, err
    assert list(tmp_path.iterdir()) == []
    c = json.loads(out)
    assert c["task"] == "mri-synthesis" and c["preset"] == "full" and c["stage_options"]["pairs"] == ["pd<t1+t2"]
    assert (c["model"]["scheduler"]["beta_start"], c["model"]["scheduler"]["beta_end"]) == (0.00085, 0.012)  # Table A3
    assert c["model"]["encoders"]["scale"] == "vit-b"
    groups = c["resolved"]["optimizer_groups"]["diffusion"]
    assert groups[0]["lr"] == 9.6e-5 and "unet_mri" in groups[0]["components"]
    (tmp_path / "ft.json").write_text(out)
    code, again, err = cli(capsys, "finetune", "mri-synthesis", "--config", str(tmp_path / "ft.json"), "--print-config")
    assert code == 0 and json.loads(again) == c, err
    code, _, err = cli(capsys, "finetune", "report-generation", "--config", str(tmp_path / "ft.json"), "--print-config")
    assert code == 2 and err.startswith("error: the config was written for task 'mri-synthesis'"), err


def test_full_pretrain_defaults_are_table_a3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "pretrain", "--preset", "full", "--stages", "diffusion", "--print-config")
    assert code == 0, err
    c = json.loads(out)
    assert c["train"]["branch_lr"] == {"text": 5e-5, "xray": 2e-5, "ct": 1e-6, "mri": 1e-6}
    assert c["resolved"]["batch"] == {"processes": 1, "micro_batch": 4, "grad_accum": 32, "total_batch": 128,
                                      "total_batch_size_setting": 128}
    lrs = {g["branch"]: g["lr"] for g in c["resolved"]["optimizer_groups"]["diffusion"]}
    assert lrs == {"text": 5e-5, "xray": 2e-5, "ct": 1e-6, "mri": 1e-6}
