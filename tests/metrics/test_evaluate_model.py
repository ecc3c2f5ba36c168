"""`evaluate_prepared` on a hand-written prepared folder: grouping per subject, the map back to
physical units (meta.intensity), the default protocol against scikit-image, CT MAE in HU, seeds
independent of the batch size, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medm2g_cli.data.manifest import load_slice, save_slice, write_manifest
from medm2g_cli.errors import ConfigError, DataError, DependencyError, InputError, OutputExistsError
from medm2g_cli.metrics.evaluate_model import evaluate_predictions, evaluate_prepared

SIZE = 24
SUBJECTS = {"s1": "test", "s2": "test", "s3": "test", "s0": "train"}


def _disc(value: float, r: float, cx: float = 11.5, cy: float = 11.5) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return np.where((x - cx) ** 2 + (y - cy) ** 2 < r * r, value, -1.0).astype(np.float32)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> object:
    """4 subjects x 3 slices (t1, t2, pd, ct); s1's first slice holds no head (the brain mask drops it).
    Slices are listed out of order in samples.jsonl; each subject has its own PD scale."""
    root = tmp_path_factory.mktemp("prep") / "mini"
    rng = np.random.default_rng(0)
    samples = []
    for i, (subj, split) in enumerate(SUBJECTS.items()):
        for k in (2, 0, 1):  # out of order on purpose
            empty = subj == "s1" and k == 0
            files = {}
            for key, val in (("t1", 0.2), ("t2", 0.6 - 0.1 * k), ("pd", 0.9 - 0.2 * i), ("ct", -0.3)):
                arr = np.full((SIZE, SIZE), -1.0, np.float32) if empty else _disc(val, 6 + k + i)
                if not empty:
                    arr = np.clip(arr + rng.normal(0, 0.03, arr.shape).astype(np.float32) * (arr > -1), -1, 1)
                files[key] = save_slice(root, f"slices/{subj}/{key}_{k:03d}.png", arr)
            intensity = {"t1": {"modality": "mri", "low": 0.0, "high": 500.0},
                         "t2": {"modality": "mri", "low": 0.0, "high": 800.0},
                         "pd": {"modality": "mri", "low": 0.0, "high": 1000.0 * (i + 1)},
                         "ct": {"modality": "ct", "low": -1024.0, "high": 2048.0}}
            samples.append({"id": f"{subj}_s{k:03d}", "subject": subj, "split": split, "files": files,
                            "text": "no acute findings", "meta": {"slice": k, "intensity": intensity}})
    write_manifest(root, {"name": "mini", "keys": ["t1", "t2", "pd", "ct"]}, samples)
    return root


def _stack(root, subj, key, like_key=None):
    """Physical-unit stack of a subject in slice order, mapped with the *reference's* (pd/ct) scale."""
    i = list(SUBJECTS).index(subj)
    high = {"pd": 1000.0 * (i + 1), "ct": 2048.0}[like_key or key]
    low = -1024.0 if (like_key or key) == "ct" else 0.0
    out = []
    for k in range(3):
        u = (np.clip(load_slice(root, f"slices/{subj}/{key}_{k:03d}.png"), -1, 1) + 1) / 2
        out.append(low + u * (high - low))
    return np.stack(out).astype(np.float64)


def t2_as_pd(target, sources, seed=0):
    """A stand-in model: answers T2 for PD (a real, imperfect prediction whose scores are known)."""
    assert target == "pd" and set(sources) == {"t1", "t2"}
    return sources["t2"]


def test_default_protocol_per_subject_equals_skimage(prepared, tmp_path):
    rep = evaluate_prepared(prepared, None, "mri-synthesis", dataset="ixi", predictor=t2_as_pd, image_size=SIZE,
                            batch_size=2, out=tmp_path / "res")
    psnrs, ssims = {}, {}
    for subj in ("s1", "s2", "s3"):
        ref, pred = _stack(prepared, subj, "pd"), _stack(prepared, subj, "t2", like_key="pd")
        keep = [k for k in range(3) if ref[k].max() > 0]  # the brain mask drops s1's empty slice
        r, p = ref[keep] / ref.max(), np.clip(pred[keep], 0, None) / pred.max()
        psnrs[subj] = np.mean([peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(r, p, strict=True)])
        ssims[subj] = 100 * np.mean([structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                           use_sample_covariance=False, data_range=1.0)
                                     for a, b in zip(r, p, strict=True)])
    m = rep.summary["metrics"]
    assert rep.summary["n_subjects"] == 3 and rep.summary["n_slices"] == 8  # s1: 2 slices, train subject left out
    assert m["psnr"]["mean"] == pytest.approx(np.mean(list(psnrs.values())), abs=1e-9)
    assert m["psnr"]["std"] == pytest.approx(np.std(list(psnrs.values())), abs=1e-9)
    assert m["ssim"]["mean"] == pytest.approx(np.mean(list(ssims.values())), abs=1e-7)
    assert m["ssim"]["std"] == pytest.approx(np.std(list(ssims.values())), abs=1e-7)
    assert {r["case"]: r["n_slices"] for r in rep.per_case} == {"s1": 2, "s2": 3, "s3": 3}
    assert 0 < m["ssim"]["mean"] < 100 and m["psnr"]["std"] > 0
    assert rep.summary["setting"] == "T2+T1→PD" and rep.summary["direction"]["sources"] == ["t2", "t1"]
    # files: the Markdown table carries the published IXI numbers next to this run
    md = (tmp_path / "res" / "results.md").read_text()
    assert "34.12 ± 1.82" in md and "this run (N=3)" in md
    assert (tmp_path / "res" / "per_case.csv").read_text().splitlines()[0].startswith("case,n_slices,psnr_db,ssim_pct")


def test_ct_mae_in_hu_inside_body(prepared):
    def constant(target, sources, seed=0):
        assert target == "ct" and list(sources) == ["t2"]
        return sources["t2"] * 0.0  # 0 in the model range = 512 HU with the recorded -1024..2048 window

    rep = evaluate_prepared(prepared, None, "mri-ct-translation", dataset="gold-atlas-pelvis", predictor=constant,
                            image_size=SIZE, max_subjects=2)
    maes = []
    for subj in ("s1", "s2"):  # max_subjects keeps the first two
        ref = _stack(prepared, subj, "ct")
        per_slice = [np.abs(512.0 - r[r > -500]).mean() for r in ref if (r > -500).any()]
        maes.append(np.mean(per_slice))
    m = rep.summary["metrics"]
    assert m["mae"]["unit"] == "HU"
    assert m["mae"]["mean"] == pytest.approx(np.mean(maes), rel=1e-5)
    assert m["mae"]["std"] == pytest.approx(np.std(maes), rel=1e-4)
    assert rep.summary["n_subjects"] == 2 and any("max_subjects 2" in n for n in rep.summary["notes"])


def test_engine_seeds_do_not_depend_on_batch_size(prepared, tmp_path_factory):
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    w = tmp_path_factory.mktemp("w") / "tiny"
    MedM2G.from_preset("tiny", seed=0, modalities=("text", "mri")).save_pretrained(w)
    a = evaluate_prepared(prepared, w, "mri-synthesis", dataset="ixi", steps=2, batch_size=1)
    b = evaluate_prepared(prepared, w, "mri-synthesis", dataset="ixi", steps=2, batch_size=8)
    c = evaluate_prepared(prepared, w, "mri-synthesis", dataset="ixi", steps=2, batch_size=8, seed=5)
    def scores(rep):
        return np.array([[r["psnr_db"], r["ssim_pct"]] for r in rep.per_case])

    # same noise per slice whatever the batch (float rounding of batched convolutions aside)
    np.testing.assert_allclose(scores(a), scores(b), rtol=1e-4, atol=1e-4)
    assert np.abs(scores(a) - scores(c)).max() > 1e-2  # another seed really draws other samples
    assert a.summary["model_image_size"] == 32 and a.summary["prepared_size"] is None  # 24 px resized both ways
    # the model lacks a CT branch: said in one line before any slice is generated
    with pytest.raises(Exception, match="no ct branch"):
        evaluate_prepared(prepared, w, "mri-ct-translation", dataset="gold-atlas-pelvis", steps=2)


def test_errors_are_one_line(prepared, tmp_path):
    with pytest.raises(DataError, match=r"needs xray \+ text .* has only: ct, pd, t1, t2, text"):
        evaluate_prepared(prepared, None, "report-generation", dataset="iu-xray", predictor=t2_as_pd)
    with pytest.raises(ConfigError, match="no evaluation defined for dataset 'ixi' with task 'report-generation'"):
        evaluate_prepared(prepared, None, "report-generation", dataset="ixi", predictor=t2_as_pd)
    with pytest.raises(DataError, match="the val split .* is empty"):
        evaluate_prepared(prepared, None, "mri-synthesis", "val", dataset="ixi", predictor=t2_as_pd)
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError):
        evaluate_prepared(prepared, None, "mri-synthesis", out=tmp_path / "taken", dataset="ixi", predictor=t2_as_pd)
    with pytest.raises(DependencyError, match="pt_inception-2015-12-05-6726825d.pth"):
        evaluate_prepared(prepared, None, "image-generation", dataset="sliver07", predictor=t2_as_pd)
    with pytest.raises(ConfigError, match="needs --weights"):
        evaluate_prepared(prepared, None, "mri-synthesis", dataset="ixi")


def test_mismatched_sets_listed_in_one_line():
    a, b = np.zeros((2, 16, 16)), np.zeros((3, 16, 16))
    with pytest.raises(InputError) as e:
        evaluate_predictions({"s1": a, "s9": a}, {"s1": a, "s2": a}, kind="image")
    msg = e.value.one_line()
    assert "only in predictions: s9" in msg and "only in references: s2" in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"shapes differ for 1 case\(s\): s2: 2x16x16 vs 3x16x16"):
        evaluate_predictions({"s1": a, "s2": a}, {"s1": a, "s2": b}, kind="image")


def test_reports_scored_with_r2gen_protocol(tmp_path):
    from medm2g_cli.metrics.text import evaluate_texts

    root = tmp_path / "cxr"
    reports = {"p1": "The heart is normal in size. No effusion.", "p2": "Lungs are clear. No pneumothorax.",
               "p3": "Mild cardiomegaly. Small left effusion."}
    samples = [{"id": k, "subject": k, "split": "test", "text": v,
                "files": {"xray": save_slice(root, f"slices/{k}.png", _disc(0.2 * (i + 1), 6))}, "meta": {}}
               for i, (k, v) in enumerate(reports.items())]
    write_manifest(root, {"name": "iu-xray", "keys": ["xray"]}, samples)
    seen = []

    def first_sentence(target, sources, seed=0):
        assert target == "text" and sources["xray"].shape == (len(sources["xray"]), 1, SIZE, SIZE)
        seen.append(seed)
        # a deterministic "model": the first sentence of the report whose X-ray has this brightness
        return [reports[f"p{round(float(x.max()) / 0.2)}"].split(".")[0] + "." for x in sources["xray"]]

    rep = evaluate_prepared(root, None, "report-generation", predictor=first_sentence, image_size=SIZE, batch_size=2,
                            meteor=False)
    assert seen == [0, 2]  # one seed base per batch: row i of the split gets seed i
    direct = evaluate_texts({k: v.split(".")[0] + "." for k, v in reports.items()}, reports, dataset="iu-xray",
                            meteor=False)
    assert rep.summary["dataset"] == "iu-xray" and rep.summary["n_reports"] == 3
    assert {k: rep.summary["metrics"][k] for k in direct.scores} == direct.scores
    assert 0 < direct.scores["BLEU_1"] < 1


def test_brats_flair_direction_is_evaluated_with_target(tmp_path):
    """``eval --target flair`` on BraTS: T2+T1ce+T1 -> FLAIR, next to Table A4's FLAIR rows."""
    root = tmp_path / "brats"
    samples = []
    for subj in ("a", "b"):
        files = {key: save_slice(root, f"slices/{subj}/{key}.png", _disc(v, 6)) for key, v in
                 (("t1", 0.2), ("t1ce", 0.4), ("t2", 0.6), ("flair", 0.8))}
        samples.append({"id": subj, "subject": subj, "split": "test", "files": files, "meta": {"slice": 0}})
    write_manifest(root, {"name": "brats2020", "keys": ["t1", "t1ce", "t2", "flair"]}, samples)
    asked = []

    def copy_t2(target, sources, seed=0):
        asked.append((target, sorted(sources)))
        return sources["t2"]

    rep = evaluate_prepared(root, None, "mri-synthesis", predictor=copy_t2, image_size=SIZE, target="flair")
    assert asked[0] == ("flair", ["t1", "t1ce", "t2"])
    assert rep.summary["setting"] == "T2+T1ce+T1→FLAIR" and rep.summary["direction"]["target"] == "flair"
    assert any("27.89" in " ".join(r) for r in rep.rows)  # MedM2G's published FLAIR PSNR (Table A4)
    default = evaluate_prepared(root, None, "mri-synthesis", predictor=copy_t2, image_size=SIZE)
    assert default.summary["direction"]["target"] == "t1ce"
    with pytest.raises(ConfigError, match="no evaluation with target 'pd'"):
        evaluate_prepared(root, None, "mri-synthesis", predictor=copy_t2, image_size=SIZE, target="pd")
