"""Domain randomisation of brain phantoms: per-label intensities, CT exactness, world geometry, thick slices, seeds.

Most tests use a small hand-built subject (nested ellipsoids with the phantom's labels, 2 mm voxels) so they
run in well under a second; one test writes a real one-subject cohort through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medm2g_cli.data.phantom import BrainSubject
from medm2g_cli.data.phantom.brain import MRI_CONTRASTS, MRI_SCALE
from medm2g_cli.data.phantom.randomise import RandomiseConfig, label_ranges, randomise_subject
from medm2g_cli.data.phantom.tissues import CT_HU, LABELS
from medm2g_cli.main import app

SHAPE = (36, 44, 32)
# everything that blurs or varies within a label switched off: each label renders to one value
FLAT = dict(label_std=(0.0, 0.0), bias_max=0.0, noise=(0.0, 0.0), thick_prob=0.0, partial_volume=(0.0, 0.0))


def _subject() -> BrainSubject:
    """Nested ellipsoids (scalp, bone, CSF, GM, WM) and a small enhancing tumour, off-centre so flips show."""
    idx = np.indices(SHAPE, dtype=float)
    c = np.array([17.0, 23.0, 15.0])
    r = np.sqrt(sum(((idx[a] - c[a]) / (s / 2.2)) ** 2 for a, s in enumerate(SHAPE)))
    lab = np.zeros(SHAPE, np.uint8)
    for value, radius in ((5, 1.0), (4, 0.9), (1, 0.8), (2, 0.7), (3, 0.5)):
        lab[r < radius] = value
    lab[np.sqrt(((idx - np.array([22.0, 16.0, 18.0])[:, None, None, None]) ** 2).sum(0)) < 3] = 7
    hu = np.array([-1000.0] + [CT_HU[LABELS[i]] for i in range(1, 9)])
    # a gradient on top of the label HU makes every voxel's value tell where it came from
    ct = np.rint(hu[lab] + idx[0] + 3 * idx[1] + 7 * idx[2]).astype(np.int16)
    images = {k: (lab.astype(np.int16) * 100 + i) for i, k in enumerate(MRI_CONTRASTS)}
    images["ct"] = ct
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-35.0, -50.0, -20.0)
    return BrainSubject("toy", 11, images, lab, affine, "finding", {"_intra_axial": lab >= 1, "tumour": None})


def _world_to_source(out: BrainSubject, src: BrainSubject) -> tuple[np.ndarray, ...]:
    """Source voxel index of every output voxel through the two affines (asserted integer)."""
    j = np.indices(out.shape).reshape(3, -1).astype(float)
    world = out.affine[:3, :3] @ j + out.affine[:3, 3:4]
    i = np.linalg.inv(src.affine[:3, :3]) @ (world - src.affine[:3, 3:4])
    assert np.allclose(i, np.rint(i), atol=1e-6), "output voxels are not on the source grid"
    i = np.rint(i).astype(int)
    for a in range(3):
        assert i[a].min() >= 0 and i[a].max() < src.shape[a]
    return tuple(i)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_label_constant_and_mean_in_its_sampled_range(seed):
    src = _subject()
    cfg = RandomiseConfig(**FLAT, gamma=(1.0, 1.0), crop_prob=0.5, orient_prob=0.5)
    out = randomise_subject(src, seed, cfg)
    for c in MRI_CONTRASTS:
        info = out.meta["randomisation"]["contrasts"][c]
        img = out.images[c]
        values = {}
        for lab in np.unique(out.labels):
            v = np.unique(img[out.labels == lab])
            assert v.size == 1, f"{c}: label {lab} is not constant with bias/noise/blur off"
            values[int(lab)] = float(v[0]) / MRI_SCALE
            lo, hi = info["label_ranges"][LABELS[int(lab)]]
            assert lo - 1e-3 <= values[int(lab)] <= hi + 1e-3, (c, LABELS[int(lab)], values[int(lab)], lo, hi)
            assert abs(values[int(lab)] - info["label_means"][LABELS[int(lab)]]) <= 0.5 / MRI_SCALE + 1e-6
        # the recorded ranges are the configured ones around the phantom's own signals
        expect = label_ranges(c, cfg)
        for lab, (lo, hi) in expect.items():
            assert np.allclose(info["label_ranges"][LABELS[lab]], (lo, hi), atol=1e-3)
        tissue = [values[k] for k in (1, 2, 3)]
        assert len(set(tissue)) == 3, f"{c}: CSF, GM and WM got the same intensity"
        # defaults keep the sequence recognisable: a T2 stays T2-like, a T1 T1-like
        if c == "t2":
            assert values[1] > values[2] > values[3]
        if c == "t1":
            assert values[1] < min(values[2], values[3])


def test_means_vary_between_variants_and_gamma_keeps_labels_constant():
    src = _subject()
    cfg = RandomiseConfig(**FLAT, gamma=(0.5, 2.0))
    wm = set()
    for seed in range(4):
        out = randomise_subject(src, seed, cfg)
        img = out.images["t1"]
        for lab in np.unique(out.labels):
            assert np.unique(img[out.labels == lab]).size == 1
        wm.add(int(img[out.labels == 3][0]))
    assert len(wm) == 4


@pytest.mark.parametrize("lowres", [False, True])
def test_ct_and_labels_are_the_source_voxels_at_the_same_world_points(lowres):
    src = _subject()
    cfg = RandomiseConfig(crop_prob=1.0, partial_prob=1.0, orient_prob=1.0, thick_prob=1.0, lowres=lowres)
    seen_perm = set()
    for seed in range(6):
        out = randomise_subject(src, seed, cfg)
        r = out.meta["randomisation"]
        seen_perm.add((tuple(r["perm"]), tuple(r["flips"])))
        i = _world_to_source(out, src)
        assert np.array_equal(out.images["ct"].reshape(-1), src.images["ct"][i]), "CT is not the label-exact source CT"
        assert np.array_equal(out.labels.reshape(-1), src.labels[i])
        assert np.array_equal(out.meta["_intra_axial"].reshape(-1), src.meta["_intra_axial"][i])
        assert out.images["ct"].dtype == np.int16
        assert all(out.images[c].shape == out.shape for c in (*MRI_CONTRASTS, "ct"))
        if lowres:
            ax = r["thick_axis"]
            out_ax = r["perm"].index(ax)  # where the thick axis went after the permutation
            assert np.linalg.norm(out.affine[:3, out_ax]) == pytest.approx(2.0 * r["factors"][ax])
            assert out.shape[out_ax] < (r["crop_stop"][ax] - r["crop_start"][ax])
    assert len(seen_perm) > 1


def test_tumour_keeps_its_world_position_under_reorientation():
    src = _subject()
    cfg = RandomiseConfig(crop_prob=1.0, partial_prob=0.0, orient_prob=1.0)

    def centre(s: BrainSubject) -> np.ndarray:
        v = np.argwhere(s.labels == 7).mean(0)
        return s.affine[:3, :3] @ v + s.affine[:3, 3]

    for seed in range(4):
        out = randomise_subject(src, seed, cfg)
        assert np.allclose(centre(out), centre(src), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thick_slices_blur_only_the_chosen_axis(seed):
    src = _subject()
    cfg = RandomiseConfig(**{**FLAT, "thick_prob": 1.0}, gamma=(1.0, 1.0), thickness_mm=(6.0, 6.0),
                          inplane_factor=(1.0, 1.0), crop_prob=0.0, partial_prob=0.0, orient_prob=0.0)
    out = randomise_subject(src, seed, cfg)
    info = out.meta["randomisation"]
    means = info["contrasts"]["t1"]["label_means"]
    sharp = np.array([means[LABELS[k]] for k in sorted(LABELS)])[src.labels] * MRI_SCALE  # same draw, no blur
    img = out.images["t1"].astype(float)
    ax = info["thick_axis"]
    assert info["voxel_mm"][ax] == pytest.approx(6.0)
    # sharpest edge along each axis, relative to the unblurred rendering of the same draw: a 6 mm slice
    # profile spreads a label boundary over ~3 voxels along the chosen axis and leaves the others sharp
    step = [np.abs(np.diff(img, axis=a)).max() / np.abs(np.diff(sharp, axis=a)).max() for a in range(3)]
    assert step[ax] < 0.5, step
    assert all(step[a] > 0.9 for a in range(3) if a != ax), step
    mean = [np.abs(np.diff(img, axis=a)).mean() / np.abs(np.diff(sharp, axis=a)).mean() for a in range(3)]
    assert mean[ax] < min(mean[a] for a in range(3) if a != ax), mean


def test_same_seed_same_bytes_and_input_untouched():
    src = _subject()
    before = {k: v.copy() for k, v in src.images.items()}
    a, b, c = (randomise_subject(src, s) for s in (5, 5, 6))
    for k in (*MRI_CONTRASTS, "ct"):
        assert a.images[k].tobytes() == b.images[k].tobytes()
        assert np.array_equal(src.images[k], before[k])
    assert a.labels.tobytes() == b.labels.tobytes() and a.affine.tobytes() == b.affine.tobytes()
    assert json.dumps(a.meta["randomisation"]) == json.dumps(b.meta["randomisation"])
    assert a.images["t1"].tobytes() != c.images["t1"].tobytes()
    # a Generator works as well as a seed and gives the same draw
    assert randomise_subject(src, np.random.default_rng(5)).images["t2"].tobytes() == a.images["t2"].tobytes()


def test_clean_contrasts_follow_only_the_spatial_transform():
    src = _subject()
    cfg = RandomiseConfig(contrasts=("t1", "t2"), clean=("pd",), crop_prob=1.0, orient_prob=1.0, thick_prob=1.0)
    out = randomise_subject(src, 3, cfg)
    i = _world_to_source(out, src)
    assert np.array_equal(out.images["pd"].reshape(-1), src.images["pd"][i])
    assert set(out.images) == {"t1", "t2", "pd", "ct"}


def test_a_crop_that_leaves_the_tumour_out_gives_a_healthy_finding():
    src = _subject()
    src.meta["tumour"] = {"lobe": "frontal lobe"}
    src.finding = "There is a mass."
    cfg = RandomiseConfig(crop_prob=0.0, partial_prob=1.0, partial_range=(0.45, 0.45), orient_prob=0.0, thick_prob=0.0)
    kept = lost = 0
    for seed in range(16):
        out = randomise_subject(src, seed, cfg)
        if np.isin(out.labels, (6, 7, 8)).any():
            kept += 1
            assert out.finding == src.finding and out.has_tumour
        else:
            lost += 1
            assert "No mass" in out.finding and not out.has_tumour
    assert kept and lost


def test_bad_config_is_a_config_error():
    from medm2g_cli.errors import ConfigError

    with pytest.raises(ConfigError):
        RandomiseConfig(contrasts=("t1", "dwi"))
    with pytest.raises(ConfigError):
        RandomiseConfig(gamma=(1.5, 0.5))
    with pytest.raises(ConfigError):
        replace(RandomiseConfig(), crop_prob=2.0)


def test_cli_writes_variants_that_prepare_keeps_with_their_subject(tmp_path: Path):
    from medm2g_cli.data.adapters import phantom as adapter
    from medm2g_cli.data.adapters.base import PrepareOptions

    out = tmp_path / "raw"
    res = CliRunner().invoke(app, ["phantom", "brain", "-o", str(out), "--subjects", "1", "--randomise", "2",
                                   "--seed", "4", "--randomise-keep", "pd"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["sub-001", "sub-001-r01", "sub-001-r02"]
    ct0 = nib.load(out / "sub-001" / "ct.nii.gz")
    for v in names[1:]:
        t1 = nib.load(out / v / "t1.nii.gz")
        ct = nib.load(out / v / "ct.nii.gz")
        assert t1.shape == ct.shape and np.allclose(t1.affine, ct.affine)
        # every CT voxel of the rendering is the original CT voxel at the same world point
        j = np.indices(ct.shape).reshape(3, -1)
        i = np.rint(np.linalg.inv(ct0.affine) @ ct.affine @ np.vstack([j, np.ones(j.shape[1])]))[:3].astype(int)
        assert np.array_equal(np.asarray(ct.dataobj).reshape(-1), np.asarray(ct0.dataobj)[tuple(i)])
        # --randomise-keep pd: the synthesis target is the original PD, the inputs are re-rendered
        pd0, pd = (np.asarray(nib.load(d / "pd.nii.gz").dataobj) for d in (out / "sub-001", out / v))
        assert np.array_equal(pd.reshape(-1), pd0[tuple(i)])
        t1_0 = np.asarray(nib.load(out / "sub-001" / "t1.nii.gz").dataobj)
        assert not np.array_equal(np.asarray(t1.dataobj).reshape(-1), t1_0[tuple(i)])
    meta = json.loads((out / "subjects.json").read_text())
    assert [r["subject"] for r in meta["subjects"]] == names and meta["randomise"]["per_subject"] == 2
    plan = adapter.scan(out, PrepareOptions())
    assert len({j.split for j in plan.jobs}) == 1  # the renderings never leak into another split
    bad = subprocess.run([sys.executable, "-m", "medm2g_cli", "phantom", "brain", "-o", str(tmp_path / "x"),
                          "--layout", "ixi", "--randomise", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "--layout plain" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
