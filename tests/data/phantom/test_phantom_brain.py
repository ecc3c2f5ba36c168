"""Brain phantom: contrast physics per tissue, per-subject geometry, shared grid across contrasts."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.data.phantom import generate_brain_subject
from medm2g_cli.data.phantom.tissues import signal_table


@pytest.fixture(scope="module")
def subjects():
    return [generate_brain_subject(11, resolution=2, tumour=True), generate_brain_subject(12, resolution=2, tumour=False)]


def _mean(s, contrast, label):
    lab = s.labels
    # skip the one-voxel partial-volume boundary of each label so the mean reflects the tissue
    from scipy import ndimage as ndi

    core = ndi.binary_erosion(lab == label) if label not in (6, 7) else lab == label
    assert core.sum() > 20, f"label {label} too small"
    return float(s.images[contrast][core].mean())


def test_mr_contrast_ordering(subjects):
    for s in subjects:
        csf, gm, wm = (_mean(s, c, k) for c, k in (("t1", 1), ("t1", 2), ("t1", 3)))
        assert wm > gm > csf
        csf, gm, wm = (_mean(s, "t2", k) for k in (1, 2, 3))
        assert csf > gm > wm
        csf, gm, wm = (_mean(s, "pd", k) for k in (1, 2, 3))
        assert csf >= gm > wm


def test_flair_and_t1ce_with_tumour(subjects):
    s = subjects[0]
    assert s.has_tumour and {6, 7, 8} <= set(np.unique(s.labels).tolist())
    csf, gm, wm, oed = (_mean(s, "flair", k) for k in (1, 2, 3, 8))
    assert csf < 0.5 * min(gm, wm)  # CSF nulled
    assert oed > 1.3 * max(gm, wm)  # oedema bright
    # gadolinium: enhancing rim much brighter on T1ce than on T1, normal WM unchanged
    assert _mean(s, "t1ce", 7) > 1.3 * _mean(s, "t1", 7)
    assert abs(_mean(s, "t1ce", 3) - _mean(s, "t1", 3)) < 0.1 * _mean(s, "t1", 3)
    assert "mass" in s.finding and s.meta["tumour"]["side"] in s.finding


def test_ct_hounsfield(subjects):
    for s in subjects:
        ct, lab = s.images["ct"], s.labels
        assert ct.dtype == np.int16
        assert _mean(s, "ct", 4) > 300
        for k in (2, 3):
            assert 15 <= _mean(s, "ct", k) <= 60
        assert ct[lab == 0].mean() < -900


def test_healthy_subject_and_finding(subjects):
    s = subjects[1]
    assert not s.has_tumour and not np.isin(s.labels, (6, 7, 8)).any()
    assert s.finding.startswith("No acute intracranial abnormality")


def test_subjects_differ_but_contrasts_share_grid(subjects):
    a, b = subjects
    assert a.meta["pose"] != b.meta["pose"]
    # labels of healthy tissue differ substantially between subjects (deformation + pose)
    brain_a, brain_b = np.isin(a.labels, (2, 3)), np.isin(b.labels, (2, 3))
    dice = 2 * (brain_a & brain_b).sum() / (brain_a.sum() + brain_b.sum())
    assert dice < 0.95
    for s in subjects:
        for arr in s.images.values():
            assert arr.shape == s.labels.shape == (99, 117, 95)
        # voxel alignment: CSF-labelled voxels are bright on T2, WM-labelled bright on T1, bone bright on CT
        assert np.allclose(s.affine, np.diag([2.0, 2.0, 2.0, 1.0]) + np.array([[0, 0, 0, -98], [0, 0, 0, -134],
                                                                              [0, 0, 0, -72], [0, 0, 0, 0]]))


def test_deterministic_by_seed():
    a = generate_brain_subject(5, tumour=None, tumour_rate=0.5)
    b = generate_brain_subject(5, tumour=None, tumour_rate=0.5)
    assert a.finding == b.finding
    for k in a.images:
        assert np.array_equal(a.images[k], b.images[k])


def test_signal_tables_follow_equations():
    t2 = signal_table("t2")
    # spin echo at TE 100 / TR 8178 ms: CSF = 1.0 (1-exp(-8178/2569)) exp(-100/329)
    assert t2[0] == pytest.approx((1 - np.exp(-8178.34 / 2569)) * np.exp(-100 / 329), rel=1e-5)
    assert signal_table("flair")[0] == pytest.approx(0.0, abs=1e-6)
