"""`medm2g demo` end to end on a tiny random model: every stage runs and writes its outputs, the
baselines are measured honestly, and a failed check is a non-zero exit (a random model fails them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.demo import GlobalMap, autoencoder_roundtrip, macro_f1, psnr_volume


def test_global_map_is_the_per_bin_statistic():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 5000)
    y = np.where(x > 0, 100.0, -50.0) + rng.normal(0, 1, x.size)
    g = GlobalMap(16, "median").fit([x], y)
    pred = g([x])
    assert np.abs(pred - y).mean() < 2.0  # a step function is representable exactly (bin edge at 0)
    two = GlobalMap(8, "mean").fit([x, -x], y)
    assert np.abs(two([x, -x]) - y).mean() < 2.0


def test_macro_f1_counts_missing_classes_as_zero():
    truth = [{"a"}, {"b"}, {"a", "b"}, {"none"}]
    f1, per = macro_f1(truth, truth, ("a", "b", "none"))
    assert f1 == 1.0 and set(per) == {"a", "b", "none"}
    f1, per = macro_f1(truth, [{"none"}] * 4, ("a", "b", "none"))
    assert per["a"] == 0.0 and per["none"] == pytest.approx(2 / 5) and f1 == pytest.approx((2 / 5) / 3)


def test_psnr_volume_default_protocol():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 100, (8, 8, 4)).astype(np.float32)
    assert psnr_volume(ref * 3, ref, np.ones(4, bool)) > 100  # scale-invariant: each volume / its max
    assert psnr_volume(ref + rng.normal(0, 5, ref.shape), ref, np.ones(4, bool)) < 40


@pytest.mark.timeout(900)
def test_demo_runs_end_to_end_and_exits_nonzero_when_a_check_fails(tmp_path, capsys):
    import torch

    from medm2g_cli.engine import MedM2G
    from medm2g_cli.main import run

    torch.set_num_threads(1)
    weights = tmp_path / "tiny"
    MedM2G.from_preset("tiny", seed=0, conditioning="concat").save_pretrained(weights)
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exc:
        run(["demo", "-o", str(out), "--weights", str(weights), "--brain-subjects", "1", "--chest-studies", "3",
             "--images-per-finding", "1", "--steps", "2", "--samples", "2", "--device", "cpu"])
    m = json.loads((out / "metrics.json").read_text())
    assert exc.value.code == (0 if m["passed"] else 1)
    for key in ("mri2ct", "synthesis", "xray_generation", "report", "eval", "checks"):
        assert key in m
    assert m["mri2ct"]["global_map_mae_hu"] > 0 and np.isfinite(m["mri2ct"]["model_mae_hu"])
    assert m["xray_generation"]["images"] == 6 and m["xray_generation"]["chance"] == pytest.approx(1 / 6)
    assert m["report"]["studies"] == 3
    html = (out / "index.html").read_text()
    for img in Path(out / "img").glob("*.png"):
        assert img.name in html
    assert (out / "translate" / "sub-001_ct.nii.gz").is_file() and (out / "translate" / "sub-001_ct_std.nii.gz").is_file()
    assert (out / "eval" / "summary.json").is_file()
    # an existing result folder is refused without --overwrite, and left as it was
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SystemExit) as exc2:
        run(["demo", "-o", str(out), "--weights", str(weights)])
    assert exc2.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_autoencoder_roundtrip_keeps_the_grid_and_goes_through_the_decoder():
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    model = MedM2G.from_preset("tiny", seed=0, modalities=("ct",)).eval()
    ct = np.random.default_rng(0).uniform(-1000, 1500, size=(37, 29, 5)).astype(np.float32)
    rt = autoencoder_roundtrip(model, ct, "ct", batch=2)
    assert rt.shape == ct.shape and np.isfinite(rt).all()
    # a decoder that outputs 0 (the middle of the CT window [-1024, 2048]) everywhere: the floor is 512 HU
    conv = model.vae("ct").decoder.conv_out
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
    np.testing.assert_allclose(autoencoder_roundtrip(model, ct, "ct"), 512.0, atol=1e-3)
