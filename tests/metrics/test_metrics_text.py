"""R2Gen cleaning and the text metrics: our wrapper equals pycocoevalcap called directly."""

from __future__ import annotations

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from medm2g_cli.data.text_clean import (
    clean_report_iu_xray,
    clean_report_mimic_cxr,
    r2gen_text,
    truncate_report,
)
from medm2g_cli.errors import InputError
from medm2g_cli.metrics.text import compute_scores, evaluate_texts, java_available

REFS = {
    "a": "The heart is normal in size. The mediastinum is unremarkable. 1. No pneumothorax. 2. No effusion.",
    "b": "Lungs are clear. There is no focal consolidation, pleural effusion or pneumothorax.",
    "c": "Stable cardiomegaly. Mild pulmonary edema (interstitial). Left-sided PICC line in place.",
}
PREDS = {
    "a": "The heart is normal in size. No pneumothorax.",
    "b": "Lungs are clear. No pleural effusion.",
    "c": "Cardiomegaly. Pulmonary edema.",
}


def test_clean_iu_by_hand():
    assert clean_report_iu_xray("The heart is normal.. 1. No effusion. 2. Lungs clear.") == \
        "the heart is normal . no effusion . lungs clear ."
    # quotes, slashes, punctuation and the :-[ range removed ('-' itself is the range operator: kept)
    assert clean_report_iu_xray('Size: "normal" (T-6/7). ') == "size normal t-67 ."
    # empty sentences are kept (R2Gen's `!= []` filter never drops anything)
    assert clean_report_iu_xray("A. . B") == "a .  . b ."


def test_clean_mimic_by_hand():
    text = "FINDINGS:\nHeart  size  normal.__ No edema..  1. Stable."
    # newline -> space, '__' -> '_', double spaces, '..' -> '.', '1. ' dropped; "normal._ no" has no
    # '. ' so it stays one sentence, whose '.', '_' and ':' are then removed
    assert clean_report_mimic_cxr(text) == "findings heart size normal no edema . stable ."


def test_truncation_keeps_max_len_minus_one_tokens():
    assert truncate_report("a b c d e", 4) == "a b c"
    assert truncate_report("a b c", None) == "a b c"
    assert truncate_report("a b z", None, vocab={"a", "b"}) == "a b <unk>"
    assert r2gen_text("One. Two.", "iu-xray", 3) == "one ."


@pytest.fixture(scope="module")
def cleaned() -> tuple[dict, dict]:
    gts = {i: [r2gen_text(REFS[i], "iu-xray", 45)] for i in sorted(REFS)}
    res = {i: [r2gen_text(PREDS[i], "iu-xray", 45)] for i in sorted(REFS)}
    return gts, res


def test_wrapper_equals_pycocoevalcap(cleaned):
    gts, res = cleaned
    ev = evaluate_texts(PREDS, REFS, dataset="iu-xray", max_length="medm2g", meteor=java_available())
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        assert ev.scores[f"BLEU_{n + 1}"] == bleu[n]
        assert [ev.per_case[i][f"BLEU_{n + 1}"] for i in sorted(REFS)] == list(bleu_items[n])
    assert ev.scores["ROUGE_L"] == Rouge().compute_score(gts, res)[0]
    assert ev.scores["CIDEr"] == Cider().compute_score(gts, res)[0]
    assert 0 < ev.scores["BLEU_4"] < ev.scores["BLEU_1"] < 1
    if java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        m = Meteor()
        assert ev.scores["METEOR"] == pytest.approx(m.compute_score(gts, res)[0], abs=1e-12)
        del m
        assert not ev.notes
    else:
        assert "METEOR" not in ev.scores and "Java" in ev.notes[0]


def test_identical_text_scores_one():
    corpus, _, _ = compute_scores({"x": ["the heart is normal ."], "y": ["lungs are clear ."]},
                                  {"x": ["the heart is normal ."], "y": ["lungs are clear ."]}, meteor=False)
    for n in range(1, 5):
        assert corpus[f"BLEU_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert corpus["ROUGE_L"] == pytest.approx(1.0)


def test_missing_java_gives_note(monkeypatch):
    monkeypatch.setattr("medm2g_cli.metrics.text.java_available", lambda: False)
    corpus, _, notes = compute_scores({"x": ["a b c d"]}, {"x": ["a b c d"]})
    assert "METEOR" not in corpus and "Java is not installed" in notes[0]


def test_id_mismatch_listed():
    with pytest.raises(InputError) as e:
        evaluate_texts({"a": "x", "z": "y"}, {"a": "x", "b": "y"}, meteor=False)
    assert "ids only in predictions: z" in e.value.message and "ids only in references: b" in e.value.message
