"""Unit tests of the inference pipeline pieces: streaming batches, runtime choices, output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.errors import ConfigError, WeightsError
from medm2g_cli.inference import pipeline as pl
from medm2g_cli.inference.provenance import sibling, split_name
from medm2g_cli.inference.runtime import InferenceSettings, check_branches, resolve_weights, select_device
from medm2g_cli.io.volume import Volume


class _SpyModel:
    """A stand-in model; :func:`_spy_generate` (the engine's generate() contract) records batch sizes and seeds."""

    image_size = 16
    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []


def _spy_generate(model, target, conds, *, num_samples, sample, batch_size):  # noqa: ANN001, ANN201
    import torch

    rows = conds[0].data.shape[0]
    model.calls.append((rows, sample.seed))
    out = []
    for r in range(rows):
        for k in range(num_samples):
            g = torch.Generator().manual_seed(sample.seed + r * num_samples + k)
            out.append(conds[0].data[r] * 0.5 + 0.01 * torch.randn(conds[0].data.shape[1:], generator=g))
    return torch.stack(out)


def test_streaming_batches_and_per_slice_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    from medm2g_cli import engine
    from medm2g_cli.config import SampleConfig

    monkeypatch.setattr(engine, "generate", _spy_generate)

    vol = Volume(np.random.default_rng(3).uniform(0, 500, (10, 12, 7)).astype(np.float32), np.eye(4), "mri")
    results = []
    for bs in (1, 3, 7):
        spy = _SpyModel()
        res = pl.translate_sources(spy, [pl.Source("t1", vol)], "t2", sample=SampleConfig(steps=1, seed=5),
                                   samples=2, batch_size=bs)
        assert max(r for r, _ in spy.calls) <= bs  # never more than a batch of slices at once
        assert [s for _, s in spy.calls] == [5 + 2 * i for i in range(0, 7, bs)]
        assert res.mean.shape == vol.shape and float(res.std.array.max()) > 0
        results.append(res.mean.array)
    np.testing.assert_allclose(results[0], results[1], atol=1e-4)
    np.testing.assert_allclose(results[0], results[2], atol=1e-4)


def test_runtime_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_weights: Path) -> None:
    msgs: list[str] = []
    dev = select_device("auto", msgs.append)
    assert dev.type in ("cpu", "cuda", "mps")
    if dev.type == "cpu":
        assert msgs and "CPU" in msgs[0]
    with pytest.raises(ConfigError):
        select_device("tpu")
    with pytest.raises(ConfigError):
        InferenceSettings(precision="fp8").validate()
    monkeypatch.setenv("MEDM2G_WEIGHTS", str(tiny_weights))
    assert resolve_weights(None) == tiny_weights
    monkeypatch.setenv("MEDM2G_WEIGHTS", str(tmp_path / "missing"))
    with pytest.raises(WeightsError, match="MEDM2G_WEIGHTS"):
        resolve_weights(None)
    assert check_branches(tiny_weights, ["t1", "ct", "text"])["modalities"]


def test_output_names() -> None:
    assert split_name(Path("a/b.nii.gz")) == ("b", ".nii.gz")
    assert sibling(Path("out/sct.nii.gz"), "std") == Path("out/sct_std.nii.gz")
    assert sibling(Path("out/series"), "std") == Path("out/series_std")
    assert sibling(Path("x.mha"), "preview", ".png") == Path("x_preview.png")
