"""Runs as folders (engine tiny preset): layout, config with the trainable/frozen split, bad configs
with one clear line, SIGKILL + --resume giving identical weights, and a 2-process Accelerate run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from prepared_fixture import make_prepared
from safetensors.torch import load_file

from medm2g_cli.errors import ConfigError, DataError, OutputExistsError
from medm2g_cli.training import checkpoints, config, model_setup, run_folder, runner

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prep") / "phantom")


def _req(data, run_dir, **kw):
    cfg = config.LoopConfig(steps=kw.pop("steps", 4), batch_size=4, lr=1e-3, checkpoint_every=kw.pop("checkpoint_every", 2))
    return config.TrainConfig(run_dir=run_dir, data=[data], loop=cfg, preset="tiny", **kw)


def test_run_folder_layout_and_config(data, tmp_path):
    run = tmp_path / "run"
    summary = runner.run(_req(data, run, stages=config.parse_stages("alignment,multiflow"), flows=["text-xray", "ct-mri"]))
    assert (run / "model" / "model_index.json").is_file() and (run / "model" / "medm2g.json").is_file()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    ck = run / "checkpoint-6"
    assert (ck / "model" / "medm2g.json").is_file() and (ck / "state" / "optimizer.bin").is_file()
    assert json.loads((ck / checkpoints.TRAINER_STATE).read_text())["data_position"] == {"step": 2}
    cfg = json.loads((run / "config.json").read_text())
    align = cfg["stages"][0]
    assert set(align["trainable"]) == {"image_encoder_xray", "image_encoder_ct", "image_encoder_mri"}
    assert "text_encoder" in align["frozen"]  # text is the frozen centre
    assert {"context_encoder_text", "conditioner_xray"} <= set(cfg["stages"][1]["trainable"])
    rows = cfg["flow_added_parameters"]
    assert [r["flow"] for r in rows] == ["text-xray", "ct-mri"] and all(r["added_parameters"] > 0 for r in rows)
    assert rows[-1]["cumulative_parameters"] == sum(r["added_parameters"] for r in rows)
    log = [json.loads(x) for x in (run / run_folder.METRICS_FILE).read_text().splitlines()]
    assert [r["global_step"] for r in log] == list(range(1, 9))
    assert {"loss/ca_xray", "loss/vi_xray", "lr", "samples_per_s"} <= set(log[0])
    assert summary.phases[1]["name"] == "multiflow"
    from medm2g_cli.engine import MedM2G

    MedM2G.from_pretrained(run / "model")  # loadable, hashes verified
    with pytest.raises(OutputExistsError):
        runner.run(_req(data, run, stages=["alignment"]))


def test_bad_configs_stop_before_training(data, tmp_path):
    run = tmp_path / "bad"
    with pytest.raises(ConfigError, match="unknown flow 'text-pet'"):
        runner.run(_req(data, run, stages=["multiflow"], flows=["text-pet"]))
    with pytest.raises(DataError, match="flow pd-t1 needs pd data"):
        runner.run(_req(data, run, stages=["multiflow"], flows=["t1-pd"]))
    assert not run.exists()  # nothing was written
    # The CLI prints one line and exits with 2.
    for args, needle in [
        (["--flows", "text-xray,text-pet"], "error: unknown flow 'text-pet'"),
        (["--stages", "multiflow", "--flows", "pd-t2"], "error: flow pd-t2 needs pd data"),
        (["--stages", "distill"], "error: unknown stage 'distill'"),
    ]:
        proc = subprocess.run([PY, "-m", "medm2g_cli.main", "pretrain", "--preset", "tiny", "--data", str(data),
                               "-o", str(run), *args], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(needle), proc.stderr
    assert not run.exists()


def test_preset_mismatch_on_init(data, tmp_path):
    from medm2g_cli.engine import MedM2G

    MedM2G.from_preset("tiny").save_pretrained(tmp_path / "tiny-model")
    proc = subprocess.run([PY, "-m", "medm2g_cli.main", "finetune", "xray-generation", "--init", str(tmp_path / "tiny-model"),
                           "--preset", "small", "--data", str(data), "-o", str(tmp_path / "ft")],
                          capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: --preset small does not match --init"), proc.stderr
    assert not (tmp_path / "ft").exists()


def _cli(data, run, *extra):
    return [PY, "-m", "medm2g_cli.main", "pretrain", "--preset", "tiny", "--data", str(data), "-o", str(run),
            "--stages", "alignment,diffusion", "--steps", "5", "--checkpoint-every", "2", "--batch-size", "4",
            "--seed", "3", "--json", *extra]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(model_dir.rglob("*.safetensors")):
        for k, v in load_file(str(f)).items():
            out[f"{f.relative_to(model_dir)}:{k}"] = v
    return out


def test_sigkill_then_resume_gives_identical_weights(data, tmp_path):
    ref = subprocess.run(_cli(data, tmp_path / "ref"), capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    victim = subprocess.Popen(_cli(data, tmp_path / "killed"), env=ENV, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "killed" / "checkpoint-7"  # diffusion phase, step 2 (alignment ends at 5)
    deadline = time.time() + 300
    while not target.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "model").exists()
    resumed = subprocess.run(_cli(data, tmp_path / "killed", "--resume"), capture_output=True, text=True, env=ENV,
                             cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["resumed_from"].endswith("checkpoint-7")
    a, b = _weights(tmp_path / "ref" / "model"), _weights(tmp_path / "killed" / "model")
    assert a.keys() == b.keys() and len(a) > 100
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["global_step"] for x in (tmp_path / "killed" / run_folder.METRICS_FILE).read_text().splitlines()]
    assert steps == list(range(1, 11))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _layout(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in (run / "model").rglob("*"))


def test_two_process_run_has_the_same_layout(data, tmp_path):
    args = ["pretrain", "--preset", "tiny", "--data", str(data), "--stages", "diffusion", "--steps", "2",
            "--checkpoint-every", "1", "--batch-size", "2", "--json"]
    one = subprocess.run([PY, "-m", "medm2g_cli.main", *args, "-o", str(tmp_path / "one")], capture_output=True,
                         text=True, env=ENV, cwd=REPO, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    port = _free_port()
    # accelerate's --cpu launcher starts a single process unless mpirun is configured; its torchrun
    # launcher (--multi_gpu) runs N CPU processes over gloo when no GPU is visible.
    cmd = [str(Path(PY).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "medm2g_cli.main", *args, "-o", str(tmp_path / "two")]
    two = subprocess.run(cmd, cwd=REPO, env={**ENV, "MASTER_PORT": str(port), "CUDA_VISIBLE_DEVICES": ""},
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert _layout(tmp_path / "one") == _layout(tmp_path / "two")
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["num_processes"] == 2 and cfg["global_batch_size"] == 4
    state = {p.name for p in (tmp_path / "two" / "checkpoint-1" / "state").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "optimizer.bin", "weights.safetensors"} <= state
    assert two.stdout.count('"run_dir"') == 1  # only the main process prints the summary


def test_finetune_task_preset_plateau_and_overrides(data, tmp_path):
    req = config.build_config(task="image-generation", init=tmp_path / "init", data=[data], run_dir=tmp_path / "ft",
                              train={"steps": 6, "batch_size": None, "lr": None, "seed": 0})
    assert (req.loop.batch_size, req.loop.lr, req.loop.plateau_factor, req.loop.adam_betas) == (16, 1e-3, 0.1, (0.9, 0.999))
    # the parts eval scores a folder with reports and all three images on (chestxray14, acdc, sliver07)
    assert req.stages == ("diffusion",) and set(req.options.pairs) == {"xray<text", "mri<text", "ct<text"}
    from medm2g_cli.engine import MedM2G

    MedM2G.from_preset("tiny").save_pretrained(tmp_path / "init")
    runner.run(req)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["kind"] == "finetune" and cfg["task"] == "image-generation" and cfg["model"]["preset"] == "tiny"
    assert {"unet_xray", "unet_ct", "unet_mri"} <= set(cfg["stages"][0]["trainable"])
    log = [json.loads(x) for x in (tmp_path / "ft" / run_folder.METRICS_FILE).read_text().splitlines()]
    # An epoch is one pass over the largest part (40 samples x 2 MRI contrasts = 80 entries) at 16
    # per step: it ends at step 5, where the plateau scheduler sees the validation loss.
    assert [r["step"] for r in log if "val_loss" in r] == [5]
    over = config.build_config(task="report-generation", init=tmp_path / "x", data=[data], run_dir=tmp_path / "ft2",
                               train={"lr": 5e-5, "batch_size": 2})
    # an unnamed folder of X-rays + reports is evaluated (and so fine-tuned) as MIMIC-CXR: 50 tokens (C.1)
    assert (over.loop.lr, over.loop.batch_size, over.options.max_report_length) == (5e-5, 2, 50)


def test_init_overrides_may_switch_a_branch_to_v_prediction():
    """An --init model may be fine-tuned into v-prediction (no parameter changes shape); a branch it
    lacks, or any other architecture field, is refused."""
    from medm2g_cli.engine import MedM2G

    model = MedM2G.from_preset("tiny", modalities=("text", "xray"))
    model_setup.apply_init_overrides(model, {"image": {"image_size": 32}, "scheduler": {"v_prediction": ["xray"]}})
    assert model.config.scheduler.v_prediction == ("xray",) and model.predicts_v("xray")
    with pytest.raises(ConfigError, match="no branch 'ct'"):
        model_setup.apply_init_overrides(model, {"scheduler": {"v_prediction": ["ct"]}})
    with pytest.raises(ConfigError, match="num_train_timesteps = 1000 but the config asks for 500"):
        model_setup.apply_init_overrides(model, {"scheduler": {"num_train_timesteps": 500}})
    # the noise schedule may change (supplement C.3), and the training noise follows it
    model_setup.apply_init_overrides(model, {"scheduler": {"beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}})
    assert float(model.train_scheduler.betas[-1]) == pytest.approx(0.02)
