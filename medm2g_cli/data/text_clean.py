"""R2Gen's report cleaning, reimplemented faithfully (zhjohnchan/R2Gen ``modules/tokenizers.py``).

Report-generation numbers are only comparable with R2Gen-style papers (MedM2G included) when the
text is cleaned and truncated exactly as R2Gen does before scoring: R2Gen scores the *decoded*
reference (cleaned, lowercased, truncated to ``max_seq_length - 1`` tokens, ``<unk>``-substituted),
never the raw report. The quirks below are deliberate copies of R2Gen's behaviour:

* the character class ``[.,?;*!%^&_+():-\\[\\]{}]`` contains the range ``:-\\[`` (``:`` to ``[``),
  so ``<=>?@`` and A–Z are removed too (harmless: text is lowercased first);
* the ``!= []`` filter compares a string with a list and is always true, so empty sentences are
  kept and produce ``' .  . '`` style runs;
* sentences are re-joined with ``' . '`` and a final ``' .'`` is appended.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# The exact pattern string R2Gen passes to re.sub (a raw string here; the escapes mean the same).
_SENT_PATTERN = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")

R2GEN_MAX_SEQ_LENGTH: dict[str, int] = {"iu-xray": 60, "mimic-cxr": 100}
"""``--max_seq_length`` in R2Gen's ``train_iu_xray.sh`` / ``train_mimic_cxr.sh``."""

R2GEN_VOCAB_THRESHOLD: dict[str, int] = {"iu-xray": 3, "mimic-cxr": 10}
"""``--threshold``: minimum train-split frequency for a token to enter the vocabulary."""

MEDM2G_MAX_REPORT_LENGTH: dict[str, int] = {"iu-xray": 45, "mimic-cxr": 50}
"""Maximum output report length of MedM2G (supplement C.1)."""


def _sent_cleaner(t: str) -> str:
    return _SENT_PATTERN.sub(
        "", t.replace('"', "").replace("/", "").replace("\\", "").replace("'", "").strip().lower()
    )


def _join(sentences: list[str]) -> str:
    # R2Gen: [sent_cleaner(s) for s in ... if sent_cleaner(s) != []] -- the test is always true.
    return " . ".join(_sent_cleaner(s) for s in sentences) + " ."


def clean_report_iu_xray(report: str) -> str:
    """Clean an IU X-ray report exactly as R2Gen's ``Tokenizer.clean_report_iu_xray``."""
    t = report.replace("..", ".").replace("..", ".").replace("..", ".").replace("1. ", "")
    for n in "2345":
        t = t.replace(f". {n}. ", ". ")
    for n in "2345":
        t = t.replace(f" {n}. ", ". ")
    return _join(t.strip().lower().split(". "))


def clean_report_mimic_cxr(report: str) -> str:
    """Clean a MIMIC-CXR report exactly as R2Gen's ``Tokenizer.clean_report_mimic_cxr``."""
    t = report.replace("\n", " ")
    for _ in range(7):
        t = t.replace("__", "_")
    for _ in range(6):
        t = t.replace("  ", " ")
    for _ in range(8):
        t = t.replace("..", ".")
    t = t.replace("1. ", "")
    for n in "2345":
        t = t.replace(f". {n}. ", ". ")
    for n in "2345":
        t = t.replace(f" {n}. ", ". ")
    return _join(t.strip().lower().split(". "))


def clean_report(report: str, dataset: str) -> str:
    """Clean with the dataset's R2Gen cleaner (``iu-xray`` uses the IU one, anything else MIMIC's,
    which is what R2Gen does for every dataset that is not ``iu_xray``)."""
    key = dataset.lower().replace("_", "-")
    return clean_report_iu_xray(report) if key == "iu-xray" else clean_report_mimic_cxr(report)


def build_vocabulary(cleaned_train_reports: Iterable[str], threshold: int) -> set[str]:
    """R2Gen's vocabulary: tokens of the (cleaned) train split seen at least ``threshold`` times."""
    counter: Counter[str] = Counter()
    for text in cleaned_train_reports:
        counter.update(text.split())
    return {tok for tok, n in counter.items() if n >= threshold}


def truncate_report(cleaned: str, max_seq_length: int | None, vocab: set[str] | None = None) -> str:
    """The text R2Gen scores for a cleaned report.

    R2Gen encodes ``[0] + ids + [0]``, keeps ``[:max_seq_length]`` and decodes ``ids[1:]`` up to
    the first 0, so at most ``max_seq_length - 1`` tokens survive. Tokens outside ``vocab`` (when
    given) become ``<unk>``. ``max_seq_length=None`` keeps every token.
    """
    tokens = cleaned.split()
    if vocab is not None:
        tokens = [t if t in vocab else "<unk>" for t in tokens]
    if max_seq_length is not None:
        tokens = tokens[: max(0, max_seq_length - 1)]
    return " ".join(tokens)


def r2gen_text(report: str, dataset: str, max_seq_length: int | None = None, vocab: set[str] | None = None) -> str:
    """Clean then truncate: the exact string R2Gen would score for ``report``."""
    return truncate_report(clean_report(report, dataset), max_seq_length, vocab)
