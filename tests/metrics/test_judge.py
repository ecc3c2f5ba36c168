"""The independent X-ray finding judge: good at its job on held-out REAL phantom radiographs, blind when
its labels are shuffled, deterministic, and able to tell true image/report pairs from shuffled ones."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.metrics import judge as J

# Small cohorts keep the file fast; the thresholds below were measured at these sizes (see each test).
TRAIN_STUDIES, TRAIN_BALANCED = 60, 30  # both views each: 180 training images
HELD_OUT_SEED = 5_550_001  # disjoint from J.JUDGE_SEED (training) and from the demo's seeds


@pytest.fixture(scope="module")
def train_set() -> tuple[list[np.ndarray], list[frozenset[str]]]:
    x, y = J.phantom_set(TRAIN_STUDIES, J.JUDGE_SEED)
    xb, yb = J.phantom_set(TRAIN_BALANCED, J.JUDGE_SEED + 1, balanced=True)
    return x + xb, y + yb


@pytest.fixture(scope="module")
def judge(train_set: tuple[list[np.ndarray], list[frozenset[str]]]) -> J.Judge:
    return J.fit(*train_set, copies=0)


@pytest.fixture(scope="module")
def held_out() -> tuple[list[np.ndarray], list[frozenset[str]]]:
    """36 held-out studies, first view only: six of each class (normal or one finding)."""
    return J.phantom_set(36, HELD_OUT_SEED, balanced=True, views=1)


def test_accurate_on_held_out_real_phantoms(judge: J.Judge, held_out: tuple[list[np.ndarray], list[frozenset[str]]]) -> None:
    acc = J.accuracy(judge, *held_out)
    # measured (180 training images): six-way 0.75 (every class 0.83-1.0 but nodule 0: the phantom's nodules
    # are faint); the four large findings 0.97-1.0 present/absent. Chance is 1/6.
    assert acc["six_way"] >= 0.6, acc
    for f in ("cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation"):
        assert acc["per_finding"][f] >= 0.85, (f, acc)
    # retrieval helper on the same real images grouped by class: far above chance, significant
    by_class: dict[str, list[np.ndarray]] = {}
    for img, names in zip(*held_out, strict=True):
        by_class.setdefault(next(iter(names)), []).append(img)
    r = J.retrieval_accuracy(judge, by_class)
    assert r["images"] == 36 and r["chance"] == pytest.approx(1 / 6)
    assert r["accuracy"] == pytest.approx(acc["six_way"])
    assert r["accuracy"] >= 3 * r["chance"] and r["p_value"] < 1e-6


def test_shuffled_labels_give_a_blind_judge(train_set: tuple[list[np.ndarray], list[frozenset[str]]],
                                            held_out: tuple[list[np.ndarray], list[frozenset[str]]]) -> None:
    x, y = train_set
    perm = np.random.default_rng(0).permutation(len(y))
    blind = J.fit(x, [y[i] for i in perm], copies=0)
    acc = J.accuracy(blind, *held_out)
    # measured: six-way 0.22-0.25 over three shuffles (chance 1/6); the real judge 0.75 on the same images
    assert acc["six_way"] <= 0.4, acc


def test_same_data_same_judge(train_set: tuple[list[np.ndarray], list[frozenset[str]]], judge: J.Judge,
                              held_out: tuple[list[np.ndarray], list[frozenset[str]]]) -> None:
    x, y = train_set
    again = J.fit(x, y, copies=0)
    assert np.array_equal(again.logits(held_out[0]), judge.logits(held_out[0]))
    # augmentation is seeded: two fits with copies and the same seed agree exactly as well
    small = slice(0, 40)
    a = J.fit(x[small], y[small], copies=1, seed=3)
    b = J.fit(x[small], y[small], copies=1, seed=3)
    assert np.array_equal(a.weights, b.weights)


def test_coherence_true_pairs_beat_shuffled(judge: J.Judge) -> None:
    studies = [J.generate_chest(J.study_seed(HELD_OUT_SEED + 7, i)) for i in range(30)]
    images = [s.views[0] for s in studies]
    reports = [s.report for s in studies]
    c = J.coherence(judge, images, reports, permutations=500)
    # measured: mean Jaccard 0.80 true vs 0.21 shuffled; exact match 0.77 vs 0.18; p 0.002
    assert c["mean_jaccard"] > c["shuffled_mean_jaccard"] + 0.3, c
    assert c["exact_match"] > c["shuffled_exact_match"]
    assert c["p_value"] < 0.01
    # the shuffled statistic is the mean over mismatched pairs: reversing the reports gives a lower score
    rev = J.coherence(judge, images, reports[::-1], permutations=50)
    assert rev["mean_jaccard"] < c["mean_jaccard"]


def test_bad_input_is_refused(judge: J.Judge) -> None:
    img = np.zeros((64, 64), np.uint8)
    with pytest.raises(ValueError, match="unknown finding"):
        J.fit([img, img], [{"fracture"}, set()])
    with pytest.raises(ValueError, match="2 images but 1"):
        J.fit([img, img], [set()])
    with pytest.raises(ValueError, match="2-D greyscale"):
        judge.predict([np.zeros((4, 4, 4, 4))])
    with pytest.raises(ValueError, match="unknown class"):
        J.retrieval_accuracy(judge, {"fracture": [img]})
    with pytest.raises(ValueError, match="2 images but 1 reports"):
        J.coherence(judge, [img, img], ["The heart is enlarged."])
