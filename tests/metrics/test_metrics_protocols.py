"""Image protocols: SynDiff's formula on a hand-worked example, per-subject aggregation, masks, matching."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medm2g_cli.errors import InputError
from medm2g_cli.metrics.image import psnr_slices, ssim_slices
from medm2g_cli.metrics.protocols import center_crop, evaluate_images, evaluate_pair, syndiff_psnr_slices


def test_syndiff_worked_example_by_hand():
    # fake: max 4 in the centre; real: max 8 in a corner that the crop removes.
    fake = np.array([[0, 0, 0, 0], [0, 2, 4, 0], [0, 4, 4, 0], [0, 0, 0, 0]], float)[None]
    real = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 8]], float)[None]
    psnr, pc, rc = syndiff_psnr_slices(fake, real, crop=(2, 2))
    # by hand: fake/4 -> centre [[.5, 1], [1, 1]]; real/8 -> centre all 1/8 (normalised BEFORE the crop)
    np.testing.assert_allclose(pc[0], [[0.5, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(rc[0], np.full((2, 2), 0.125))
    mse = ((0.5 - 0.125) ** 2 + 3 * (1 - 0.125) ** 2) / 4  # = 0.609375
    assert mse == pytest.approx(0.609375)
    expected = 20 * math.log10(1.0 / math.sqrt(mse))  # max(fake crop) = 1
    assert psnr[0] == pytest.approx(expected, abs=1e-12)
    assert psnr[0] == pytest.approx(2.1512, abs=1e-4)


def test_syndiff_uses_max_of_cropped_prediction():
    # the prediction's maximum lies outside the crop: max(fake_crop) = 0.5, not 1
    fake = np.zeros((1, 4, 4))
    fake[0, 0, 0], fake[0, 1:3, 1:3] = 2.0, 1.0
    real = np.zeros((1, 4, 4))
    real[0, 1:3, 1:3] = 1.0
    psnr, _, _ = syndiff_psnr_slices(fake, real, crop=(2, 2))
    assert psnr[0] == pytest.approx(20 * math.log10(0.5 / 0.5))  # rmse = 0.5 -> 0 dB


def test_center_crop_like_torchvision():
    a = np.arange(5 * 6).reshape(1, 5, 6)
    # torchvision: top = round((5-2)/2) = 2 (round half to even of 1.5 -> 2), left = round((6-3)/2) = 2
    np.testing.assert_array_equal(center_crop(a, (2, 3))[0], a[0, 2:4, 2:5])
    padded = center_crop(np.ones((1, 2, 2)), (4, 3))  # pads with zeros when smaller
    assert padded.shape == (1, 4, 3) and padded.sum() == 4


def test_default_protocol_normalises_per_volume_and_averages_per_subject():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 200, (3, 24, 24))
    pred = ref * 3.0 + rng.normal(0, 5, ref.shape)  # scale differs: per-volume max removes it
    pred[0, 0, 0] = -50.0  # negatives clipped
    res = evaluate_pair("s1", pred, ref, protocol="default", modality="mri")
    pn = np.clip(pred, 0, None) / np.clip(pred, 0, None).max()
    rn = ref / ref.max()
    assert res.psnr == pytest.approx(float(np.mean(psnr_slices(pn, rn))))
    assert res.ssim == pytest.approx(float(np.mean(ssim_slices(pn, rn))))
    assert res.n_slices == 3 and res.mae_hu is None


def _nifti(path, arr):
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


def test_folders_mean_std_across_subjects_and_ct_mae(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    rng = np.random.default_rng(2)
    per_subject = []
    for i, noise in enumerate((20.0, 60.0)):
        ref = np.full((20, 20, 4), -1000.0)
        ref[4:16, 4:16, 1:3] = 40.0  # body only on two slices
        pred = ref + rng.normal(0, noise, ref.shape)
        _nifti(tmp_path / "p" / f"sub{i}.nii.gz", pred)
        _nifti(tmp_path / "r" / f"sub{i}.nii.gz", ref)
        per_subject.append((pred, ref))
    ev = evaluate_images(tmp_path / "p", tmp_path / "r", modality="ct", mask="body")
    s = ev.summary()
    assert s["n_subjects"] == 2 and s["n_slices"] == 4  # only slices holding the body
    psnrs = [c.psnr for c in ev.cases]
    assert s["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(psnrs))
    assert s["metrics"]["psnr"]["std"] == pytest.approx(np.std(psnrs))
    # MAE by hand for subject 0: inside the body, on HU clipped to [-1024, 3071]
    pred, ref = per_subject[0]
    p32 = pred.astype(np.float32).astype(np.float64)
    body = ref > -500
    err = np.abs(np.clip(p32, -1024, 3071) - ref)[body]
    # slice means then mean (both slices have the same body size, so equal to the pooled mean)
    assert ev.cases[0].mae_hu == pytest.approx(err.mean(), rel=1e-6)
    assert s["metrics"]["mae"]["unit"] == "HU"


def test_mismatch_names_counts_shapes(tmp_path):
    for d in ("p", "r", "p2"):
        (tmp_path / d).mkdir()
    img = np.zeros((16, 16), np.uint8)
    for n in ("a", "b"):
        Image.fromarray(img).save(tmp_path / "r" / f"{n}.png")
    Image.fromarray(img).save(tmp_path / "p" / "a.png")
    Image.fromarray(img).save(tmp_path / "p" / "c.png")
    with pytest.raises(InputError) as e:
        evaluate_images(tmp_path / "p", tmp_path / "r", modality="xray")
    assert "only in predictions: c" in e.value.message and "only in references: b" in e.value.message
    Image.fromarray(img).save(tmp_path / "p2" / "a.png")
    Image.fromarray(np.zeros((16, 17), np.uint8)).save(tmp_path / "p2" / "b.png")
    with pytest.raises(InputError, match=r"b: 1x16x17 vs 1x16x16"):
        evaluate_images(tmp_path / "p2", tmp_path / "r", modality="xray")
