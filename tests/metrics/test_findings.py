"""Finding-label scores: macro-F1 with absent classes counted as 0."""

from __future__ import annotations

import pytest

from medm2g_cli.metrics.findings import label_set, macro_f1


def test_macro_f1_counts_missing_classes_as_zero():
    truth = [{"a"}, {"b"}, {"a", "b"}, {"none"}]
    f1, per = macro_f1(truth, truth, ("a", "b", "none"))
    assert f1 == 1.0 and set(per) == {"a", "b", "none"}
    f1, per = macro_f1(truth, [{"none"}] * 4, ("a", "b", "none"))
    assert per["a"] == 0.0 and per["none"] == pytest.approx(2 / 5) and f1 == pytest.approx((2 / 5) / 3)


def test_label_set_names_no_finding():
    assert label_set([]) == {"none"} and label_set(["nodule"]) == {"nodule"}
