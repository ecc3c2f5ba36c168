"""Scores of finding labels (sets of finding names per study), as the demo's report check uses them."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def macro_f1(truth: list[set[str]], pred: list[set[str]], classes: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Macro-averaged F1 over ``classes`` (F1 = 0 for a class neither predicted nor present... counted as 0,
    as sklearn does with ``zero_division=0``)."""
    per: dict[str, float] = {}
    for c in classes:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if c in t and c in p)
        fp = sum(1 for t, p in zip(truth, pred, strict=True) if c not in t and c in p)
        fn = sum(1 for t, p in zip(truth, pred, strict=True) if c in t and c not in p)
        per[c] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return float(np.mean(list(per.values()))), per


def label_set(names: Iterable[str]) -> set[str]:
    """The findings as a set, ``{"none"}`` when there are none (so "no finding" is a class of its own)."""
    s = set(names)
    return s if s else {"none"}
