"""FID: the Fréchet distance equals the closed form for known Gaussians; the folder pipeline; the
pytorch-fid state-dict layout; and the one-line message when the Inception weights file is absent."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medm2g_cli.errors import DependencyError, InputError, WeightsError
from medm2g_cli.metrics.fid import (
    FID_WEIGHTS_FILE,
    build_fid_inception,
    compute_fid,
    feature_stats,
    frechet_distance,
    load_fid_inception,
    resolve_fid_weights,
)


def test_frechet_closed_form_commuting_gaussians():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([4.0, 1.0, 9.0, 0.25, 2.0])
    mu1, mu2 = np.arange(5.0), np.arange(5.0)[::-1]
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # by hand: |mu1 - mu2|^2 = 16 + 4 + 0 + 4 + 16; then (1-2)^2, (r2-1)^2, (r3-3)^2, (2-0.5)^2, (r5-r2)^2
    r2, r3, r5 = np.sqrt(2), np.sqrt(3), np.sqrt(5)
    assert expected == pytest.approx(40.0 + 1.0 + (r2 - 1) ** 2 + (r3 - 3) ** 2 + 2.25 + (r5 - r2) ** 2)


def test_frechet_one_dimension_and_identity():
    # N(0, 4) vs N(3, 1): 9 + 4 + 1 - 2 * sqrt(4) = 10
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == pytest.approx(10.0)
    s = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance(np.ones(2), s, np.ones(2), s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_general_matches_symmetric_form():
    # general (non-commuting) case: Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), computed by eigendecomposition
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = x @ x.T + np.eye(4), y @ y.T + 0.5 * np.eye(4)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum()
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-8)


def test_feature_stats_like_pytorch_fid():
    f = np.random.default_rng(2).normal(size=(10, 3))
    mu, sigma = feature_stats(f)
    np.testing.assert_allclose(mu, f.mean(0))
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False, ddof=1))
    with pytest.raises(InputError, match="at least 2 images"):
        feature_stats(f[:1])


class MeanStd:
    """A stand-in feature extractor (the pipeline, not the network, is under test): mean and
    standard deviation of each image's first channel, or each channel's mean with ``rgb``."""

    def __init__(self, rgb: bool = False) -> None:
        self.rgb = rgb

    def to(self, device):
        return self

    def __call__(self, x):
        import torch

        if self.rgb:
            return x.mean(dim=(2, 3))
        return torch.stack([x[:, 0].mean(dim=(1, 2)), x[:, 0].std(dim=(1, 2))], 1)


def _pngs(folder, values, mode="L"):
    folder.mkdir()
    rng = np.random.default_rng(len(values))
    for i, v in enumerate(values):
        a = np.clip(v + rng.normal(0, 20, (12, 10)), 0, 255)
        if mode == "I;16":
            Image.fromarray((a * 257).astype(np.uint16)).save(folder / f"{i}.png")
        else:
            Image.fromarray(a.astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_compute_fid_folders_grey_replicated(tmp_path):
    from medm2g_cli.metrics.fid import extract_features

    g = _pngs(tmp_path / "g", [40, 90, 120, 200])
    r = _pngs(tmp_path / "r", [60, 100, 150, 180, 220])
    res = compute_fid(g, r, None, net=MeanStd(), batch_size=3)
    # grey images are replicated to three channels, each read as 8-bit / 255
    rgb, rules = extract_features(MeanStd(rgb=True), sorted(g.iterdir()), 2)
    np.testing.assert_allclose(rgb[:, 0], rgb[:, 2])
    assert rgb[0, 1] == pytest.approx(np.asarray(Image.open(g / "0.png"), float).mean() / 255, abs=1e-5)
    assert rules == {"8-bit/255"}
    fg, _ = extract_features(MeanStd(), sorted(g.iterdir()), 2)
    fr, _ = extract_features(MeanStd(), sorted(r.iterdir()), 2)
    expected = frechet_distance(fg.mean(0), np.cov(fg, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False))
    assert res.fid == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert (res.n_pred, res.n_ref) == (4, 5) and res.summary()["n_pred"] == 4
    with pytest.raises(InputError, match="different bit depths"):
        compute_fid(g, _pngs(tmp_path / "r16", [60, 100], mode="I;16"), None, net=MeanStd())


def test_missing_weights_names_file_and_source(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDM2G_FID_WEIGHTS", raising=False)
    with pytest.raises(DependencyError) as e:
        resolve_fid_weights(None)
    line = e.value.one_line()
    assert FID_WEIGHTS_FILE in line and "github.com/mseitzer/pytorch-fid" in line and "\n" not in line
    with pytest.raises(DependencyError, match="does not exist"):
        resolve_fid_weights(tmp_path / FID_WEIGHTS_FILE)
    monkeypatch.setenv("MEDM2G_FID_WEIGHTS", str(tmp_path / "elsewhere.pth"))
    with pytest.raises(DependencyError, match="elsewhere.pth"):
        resolve_fid_weights(None)


def test_state_dict_layout_round_trip(tmp_path):
    import torch

    net = build_fid_inception()
    state = net.state_dict()
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    torch.save(state, tmp_path / "w.pth")
    loaded = load_fid_inception(tmp_path / "w.pth")
    assert torch.equal(loaded.state_dict()["Conv2d_1a_3x3.conv.weight"], state["Conv2d_1a_3x3.conv.weight"])
    del state["Mixed_6b.branch1x1.conv.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="missing 1 keys"):
        load_fid_inception(tmp_path / "bad.pth")
