"""Chest phantom: reports agree with labels, cardiomegaly raises the CTR, findings change the image."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.data.phantom import CHEST_FINDINGS, findings_from_report, generate_chest
from medm2g_cli.errors import ConfigError


def test_report_matches_findings_random():
    for seed in range(25):
        st = generate_chest(seed, 256)
        assert findings_from_report(st.report) == set(st.finding_names()), st.report
        assert len(st.findings) <= 2
        assert [v.shape for v in st.views] == [(256, 256), (256, 256)] and st.views[0].dtype == np.uint8
        assert not np.array_equal(st.views[0], st.views[1])


@pytest.mark.parametrize("name", CHEST_FINDINGS)
def test_forced_finding_changes_image(name):
    base = generate_chest(3, 256, "none")
    st = generate_chest(3, 256, name)
    assert findings_from_report(st.report) == {name}
    mask = st.masks["heart"] if name == "cardiomegaly" else st.masks[name]
    assert mask.any()
    if name == "pneumothorax":
        # pleural air without lung is darker than aerated lung in the same region
        assert st.views[0][mask].mean() < base.views[0][mask].mean() - 3
    else:
        # added soft-tissue/fluid density is brighter on the radiograph
        assert st.views[0][mask].mean() > base.views[0][mask].mean() + 3


def test_cardiomegaly_ctr():
    normal = [generate_chest(s, 256, "none").ctr for s in range(5)]
    big = [generate_chest(s, 256, "cardiomegaly").ctr for s in range(5)]
    assert max(normal) < 0.5 < min(big)
    # the heart's radiographic width, measured from the image row profile, grows too
    assert min(big) - max(normal) > 0.08


def test_anatomy_contrast_and_determinism():
    st = generate_chest(1, 256, "none")
    img = st.views[0]
    lung = st.masks["right_lung"] & ~st.masks["heart"]
    assert img[:5, :5].mean() < 10  # air outside the body is black
    assert img[lung].mean() < img[st.masks["heart"]].mean()  # lungs darker than heart
    assert np.array_equal(img, generate_chest(1, 256, "none").views[0])
    with pytest.raises(ConfigError):
        generate_chest(1, 300)
    with pytest.raises(ConfigError):
        generate_chest(1, 256, "fracture")
