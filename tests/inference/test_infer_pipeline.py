"""Unit tests of the inference pipeline pieces: orientation, intensities, slice geometry, modality
checks, streaming batches, runtime choices."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from medm2g_cli.errors import ConfigError, ModalityError, WeightsError
from medm2g_cli.inference import pipeline as pl
from medm2g_cli.inference.provenance import sibling, split_name
from medm2g_cli.inference.runtime import InferenceSettings, check_branches, resolve_weights, select_device
from medm2g_cli.io.volume import Volume


def _affines() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            a = np.zeros((4, 4))
            for col, (row, s) in enumerate(zip(perm, signs, strict=True)):
                a[row, col] = s * (1.0 + 0.5 * col)
            a[:3, 3], a[3, 3] = [3.0, -2.0, 7.0], 1.0
            out.append(a)
    return out


def test_canonical_round_trip_all_48_orientations() -> None:
    import nibabel as nib

    arr = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    affs = _affines()
    assert len(affs) == 48
    for aff in affs:
        c, ornt = pl.to_canonical(arr, aff)
        assert np.array_equal(pl.from_canonical(c, ornt), arr)
        # the canonical array is what nibabel's as_closest_canonical gives
        ref = nib.as_closest_canonical(nib.Nifti1Image(arr, aff)).get_fdata(dtype=np.float32)
        assert np.array_equal(c, ref)


def test_normalisation_presets_invert() -> None:
    hu = np.array([-1024.0, -500.0, 0.0, 40.0, 2048.0], dtype=np.float32)
    n = pl.normalisation_for(hu, "ct")
    assert (n.low, n.high) == (-1024.0, 2048.0)
    np.testing.assert_allclose(n.inverse(n.forward(hu)), hu, atol=1e-3)
    mri = np.random.default_rng(1).gamma(2.0, 100.0, 5000).astype(np.float32)
    m = pl.normalisation_for(mri, "t1")
    y = m.forward(mri)
    assert y.min() == -1.0 and y.max() == 1.0
    inside = (mri >= m.low) & (mri <= m.high)
    np.testing.assert_allclose(m.inverse(y)[inside], mri[inside], rtol=1e-4, atol=1e-2)
    assert pl.target_normalisation("t2", [m]).low == m.low  # sibling contrast keeps the MRI scale
    assert pl.target_normalisation("ct", [m]).high == 2048.0


@pytest.mark.parametrize("h,w", [(20, 12), (32, 32), (50, 70)])
def test_slice_geometry_inverse(h: int, w: int) -> None:
    geom = pl.SliceGeometry(h, w, 32)
    x = np.random.default_rng(2).uniform(-1, 1, (3, h, w)).astype(np.float32)
    t = geom.to_model(x)
    assert tuple(t.shape) == (3, 1, 32, 32)
    back = geom.from_model(t)
    assert back.shape == (3, h, w)
    if max(h, w) <= 32:
        np.testing.assert_array_equal(back, x)  # padded, never upsampled: exact
    # a smooth image survives the resize round trip closely
    yy, xx = np.mgrid[:h, :w]
    smooth = np.sin(xx / 9.0) * np.cos(yy / 11.0)
    back = geom.from_model(geom.to_model(smooth[None].astype(np.float32)))[0]
    assert np.abs(back - smooth)[2:-2, 2:-2].max() < 0.15


def test_modality_checks() -> None:
    aff = np.eye(4)
    ct = Volume(np.full((4, 4, 4), -1000.0), aff)
    with pytest.raises(ModalityError, match="looks like a CT"):
        pl.check_modality(ct, "mri")
    pl.check_modality(ct, "ct")
    mr = Volume(np.random.default_rng(0).uniform(0, 900, (4, 4, 4)), aff)
    pl.check_modality(mr, "t1")
    with pytest.raises(ModalityError, match="not a CT"):
        pl.check_modality(mr, "ct")
    tagged = Volume(np.zeros((4, 4, 4)), aff, meta={"Modality": "CT"})
    with pytest.raises(ModalityError, match="DICOM Modality is CT"):
        pl.check_modality(tagged, "mri")


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
