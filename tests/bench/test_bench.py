"""The benchmark code paths run end to end at tiny sizes (``bench/run.py --quick``, ``bench/device.py --dry-run``).

Ratios are not asserted (they are machine-dependent and measured by ``make bench``); the tests check
that every figure produces its numbers, the JSON is written, and the measured quantities are sane.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@pytest.mark.timeout(240)
def test_run_quick_writes_every_in_process_figure(tmp_path: Path) -> None:
    from bench.run import main

    out = tmp_path / "results.json"
    # figures chosen by number or by name alike; the JSON is keyed by name, each record carries its number
    assert main(["--quick", "--only", "1,dicom_read_time,5,6,unet_flops,8", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {"machine", "versions", "settings", "figures"} <= set(res)
    f = res["figures"]
    assert list(f) == ["translate_throughput", "dicom_read_time", "training_throughput", "ddim50_vs_dpm20",
                       "unet_flops", "default_sampling_vs_ddim50"] and not any("error" in v for v in f.values())
    assert [v["figure"] for v in f.values()] == [1, 4, 5, 6, 7, 8]
    assert f["translate_throughput"]["medm2g_slices_per_s"] > 0 and f["translate_throughput"]["plain_slices_per_s"] > 0
    assert f["dicom_read_time"]["same_voxels"]  # both readers decoded the same series
    assert f["training_throughput"]["ratio"] > 0
    assert f["ddim50_vs_dpm20"]["ddim50"]["psnr_db"] > 0 and f["ddim50_vs_dpm20"]["time_ratio"] > 0
    assert f["unet_flops"]["presets"]["tiny"]["gflop_per_eval"] > 0
    speed = f["default_sampling_vs_ddim50"]
    for task in ("translate", "synthesize"):  # figure 8: default (the size table's block) vs the DDIM reference
        d, r = speed[task]["default"], speed[task]["ddim50"]
        assert d["settings"]["sampler"] == "dpm++" and d["source"]["sampler"] == "model"
        assert r["settings"]["sampler"] == "ddim" and r["source"]["sampler"] == "flag"
        assert d["stages_s"]["unet_rows"] < r["stages_s"]["unet_rows"] and d["stages_s"]["unet"] > 0
        assert speed[task]["time_ratio"] > 0 and np.isfinite(speed[task]["quality_diff"])


def test_only_refuses_unknown_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.registry import figure_name
    from bench.run import main

    assert figure_name("3") == figure_name("help_startup_time") == "help_startup_time"
    assert figure_name("9") is None and figure_name("fig3") is None
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "3,memory", "--out", str(out)]) == 2
    assert "unknown figure(s) memory" in capsys.readouterr().err and not out.exists()


def test_plain_baseline_matches_medm2g_translation() -> None:
    """The figure-1 baseline computes the same thing as medm2g (else the ratio compares different work)."""
    import numpy as np
    import torch

    from bench.figures import plain_translate_slice
    from medm2g_cli.config import SampleConfig
    from medm2g_cli.engine import Condition, MedM2G, generate

    model = MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri")).eval()
    x = torch.rand((1, 1, 32, 32), generator=torch.Generator().manual_seed(0)) * 2 - 1
    sample = SampleConfig(steps=3, guidance=2.0, eta=0.0, seed=5)  # eta 0: no scheduler noise to align
    ours = generate(model, "ct", [Condition("mri", x)], sample=sample)
    plain = plain_translate_slice(model, x, sample, seed=5)
    np.testing.assert_allclose(plain.numpy(), ours.numpy(), atol=1e-4)


def test_flop_count_sees_attention() -> None:
    from bench.figures import count_unet_flops
    from medm2g_cli.config import model_preset

    cfg = model_preset("tiny", modalities=("ct", "mri"))
    no_attn = model_preset("tiny", modalities=("ct", "mri"), **{"image.attention_levels": (False, False)})
    assert count_unet_flops(cfg) > count_unet_flops(no_attn) > 0


@pytest.mark.timeout(120)
def test_memory_child_reports_peak() -> None:
    from bench.figures import _mem_child

    r = _mem_child(64, 3, 1, 2)
    assert r["output_bytes"] == 64 * 64 * 3 * 4
    assert r["peak_kb"] >= r["rss_before_kb"] > 0


@pytest.mark.timeout(120)
def test_device_dry_run(tmp_path: Path) -> None:
    from bench.device import gpu_peak, main

    assert gpu_peak("NVIDIA H200", None) == 989.0 and gpu_peak("x", 5.0) == 5.0
    out = tmp_path / "device.json"
    assert main(["--dry-run", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["translate_bf16"]["finite"] and res["translate_bf16"]["slices_per_s"] > 0
    assert res["unet_forward_bf16"]["compiled"]["s_per_forward"] > 0
    assert res["default_sampling_vs_ddim50"]["translate"]["time_ratio"] > 0  # gpu.sh's figure 8 (full preset on a GPU)
    assert res["train_bf16"]["medm2g_samples_per_s"] > 0
