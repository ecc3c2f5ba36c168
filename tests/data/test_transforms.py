"""Preprocessing shared by training and inference: intensity presets and slice geometry, both inverted."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.data.transforms import Normalisation, SliceGeometry, normalisation_for, target_normalisation


def test_normalisation_presets_invert() -> None:
    hu = np.array([-1024.0, -500.0, 0.0, 40.0, 2048.0], dtype=np.float32)
    n = normalisation_for(hu, "ct")
    assert (n.low, n.high) == (-1024.0, 2048.0)
    np.testing.assert_allclose(n.inverse(n.forward(hu)), hu, atol=1e-3)
    mri = np.random.default_rng(1).gamma(2.0, 100.0, 5000).astype(np.float32)
    m = normalisation_for(mri, "t1")
    y = m.forward(mri)
    assert y.min() == -1.0 and y.max() == 1.0
    inside = (mri >= m.low) & (mri <= m.high)
    np.testing.assert_allclose(m.inverse(y)[inside], mri[inside], rtol=1e-4, atol=1e-2)
    assert target_normalisation("t2", [m]).low == m.low  # sibling contrast keeps the MRI scale
    assert target_normalisation("ct", [m]).high == 2048.0


@pytest.mark.parametrize("h,w", [(20, 12), (32, 32), (50, 70)])
def test_slice_geometry_inverse(h: int, w: int) -> None:
    geom = SliceGeometry(h, w, 32)
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


def test_inverse_clip_only_when_asked() -> None:
    n = Normalisation("ct", -1000.0, 1000.0)
    y = np.array([-1.5, -1.0, 0.0, 1.0, 1.25], dtype=np.float32)
    np.testing.assert_array_equal(n.inverse(y), [-1500.0, -1000.0, 0.0, 1000.0, 1250.0])
    np.testing.assert_array_equal(n.inverse(y, clip=True), [-1000.0, -1000.0, 0.0, 1000.0, 1000.0])
