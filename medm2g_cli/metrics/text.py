"""Report-generation metrics scored the way R2Gen scores them.

R2Gen's ``modules/metrics.py::compute_scores`` builds ``gts = {i: [gt]}`` and ``res = {i: [re]}``
keyed by position, and calls pycocoevalcap's ``Bleu(4)``, ``Meteor()`` and ``Rouge()`` directly —
no PTBTokenizer, so the ``.`` tokens of the cleaned text count. R2Gen computes no CIDEr; successors
add pycocoevalcap's ``Cider()`` (CIDEr-D, IDF from the evaluated reference set), as we do.
Both sides are cleaned with R2Gen's cleaner and truncated to the same length
(:mod:`medm2g_cli.data.text_clean`).

METEOR runs ``java -jar meteor-1.5.jar`` (shipped inside pycocoevalcap). Without Java it is
omitted and the result carries a note saying so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.text_clean import MEDM2G_MAX_REPORT_LENGTH, R2GEN_MAX_SEQ_LENGTH, r2gen_text
from ..errors import DependencyError, InputError

TEXT_METRICS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")
TEXT_DATASETS = ("iu-xray", "mimic-cxr")


@dataclass
class TextEvaluation:
    """Corpus scores, per-report scores (where the scorer defines them), and notes."""

    scores: dict[str, float]
    per_case: dict[str, dict[str, float]]
    n: int
    dataset: str
    max_length: int | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"n_reports": self.n, "dataset": self.dataset, "max_seq_length": self.max_length,
                "metrics": dict(self.scores), "notes": list(self.notes),
                "protocol": "R2Gen cleaning + truncation, pycocoevalcap Bleu(4)/Meteor/Rouge/Cider, no PTBTokenizer"}


def java_available() -> bool:
    """True when a ``java`` executable is on PATH (METEOR needs it)."""
    return shutil.which("java") is not None


def compute_scores(gts: dict[Any, list[str]], res: dict[Any, list[str]], *, meteor: bool = True,
                   cider: bool = True) -> tuple[dict[str, float], dict[str, list[float]], list[str]]:
    """R2Gen's ``compute_scores`` (+ CIDEr-D): corpus scores, per-item scores, notes.

    ``gts``/``res`` are ``{id: [text]}`` with already-cleaned text, exactly what the pycocoevalcap
    scorers take.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(gts) != set(res):
        raise InputError("references and predictions have different ids", "match them by id first")
    if not gts:
        raise InputError("no reports to score", "give at least one prediction/reference pair")
    scorers: list[tuple[Any, Any]] = [(Bleu(4), ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4"])]
    notes: list[str] = []
    if meteor:
        if java_available():
            from pycocoevalcap.meteor.meteor import Meteor

            scorers.append((Meteor(), "METEOR"))
        else:
            notes.append("METEOR omitted: Java is not installed (pycocoevalcap runs `java -jar meteor-1.5.jar`); "
                         "install a JRE (e.g. apt-get install default-jre-headless) to get it")
    scorers.append((Rouge(), "ROUGE_L"))
    if cider:
        scorers.append((Cider(), "CIDEr"))
    corpus: dict[str, float] = {}
    items: dict[str, list[float]] = {}
    for scorer, method in scorers:
        try:
            score, scores = scorer.compute_score(gts, res, verbose=0)
        except TypeError:  # only Bleu takes verbose
            score, scores = scorer.compute_score(gts, res)
        if isinstance(method, list):
            for sc, scs, m in zip(score, scores, method, strict=True):
                corpus[m] = float(sc)
                items[m] = [float(x) for x in scs]
        else:
            corpus[method] = float(score)
            items[method] = [float(x) for x in scores]
    # pycocoevalcap's Meteor stops its java process in __del__: drop the scorers now, not at exit.
    scorers.clear()
    return corpus, items, notes


def read_jsonl(path: Path, role: str) -> dict[str, str]:
    """Read ``{"id": ..., "text": ...}`` lines (``report`` accepted for ``text``) into {id: text}."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{role} file '{p}' does not exist", "give a .jsonl file with one {\"id\", \"text\"} per line")
    out: dict[str, str] = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{lineno} is not valid JSON ({exc.msg})", "write one JSON object per line") from exc
            if not isinstance(obj, dict) or "id" not in obj or not ({"text", "report"} & set(obj)):
                raise InputError(f"{p}:{lineno} lacks 'id' or 'text'", 'each line must be {"id": ..., "text": ...}')
            key = str(obj["id"])
            if key in out:
                raise InputError(f"{p}:{lineno} repeats id '{key}'", "ids must be unique")
            out[key] = str(obj.get("text", obj.get("report", "")))
    if not out:
        raise InputError(f"{role} file '{p}' holds no reports", "write one JSON object per line")
    return out


def evaluate_texts(pred: dict[str, str], ref: dict[str, str], *, dataset: str = "iu-xray",
                   max_length: int | None | str = "medm2g", meteor: bool = True) -> TextEvaluation:
    """Clean (R2Gen), truncate and score predictions against references matched by id.

    ``max_length``: ``"medm2g"`` (45 IU / 50 MIMIC, supplement C.1), ``"r2gen"`` (60 / 100, R2Gen's
    ``max_seq_length``), an int, or None for no truncation. It is R2Gen's ``max_seq_length``: at
    most ``max_length - 1`` tokens are kept on both sides.
    """
    ds = dataset.lower().replace("_", "-")
    if ds not in TEXT_DATASETS:
        raise InputError(f"unknown report dataset '{dataset}'", f"use one of: {', '.join(TEXT_DATASETS)}")
    only_p, only_r = sorted(set(pred) - set(ref)), sorted(set(ref) - set(pred))
    if only_p or only_r:
        parts = [f"{len(pred)} predictions vs {len(ref)} references"]
        if only_p:
            parts.append("ids only in predictions: " + ", ".join(only_p[:8]) + (" ..." if len(only_p) > 8 else ""))
        if only_r:
            parts.append("ids only in references: " + ", ".join(only_r[:8]) + (" ..." if len(only_r) > 8 else ""))
        raise InputError("prediction and reference reports do not match (" + "; ".join(parts) + ")",
                         "give files with the same ids")
    if max_length == "medm2g":
        limit: int | None = MEDM2G_MAX_REPORT_LENGTH[ds]
    elif max_length == "r2gen":
        limit = R2GEN_MAX_SEQ_LENGTH[ds]
    elif max_length is None or isinstance(max_length, int):
        limit = max_length
    else:
        raise InputError(f"bad max length '{max_length}'", "use medm2g, r2gen, none or an integer")
    ids = sorted(ref)
    gts = {i: [r2gen_text(ref[i], ds, limit)] for i in ids}
    res = {i: [r2gen_text(pred[i], ds, limit)] for i in ids}
    corpus, items, notes = compute_scores(gts, res, meteor=meteor)
    per_case = {i: {m: vals[k] for m, vals in items.items() if len(vals) == len(ids)} for k, i in enumerate(ids)}
    return TextEvaluation(scores=corpus, per_case=per_case, n=len(ids), dataset=ds, max_length=limit, notes=notes)


def require_java() -> None:
    """Raise :class:`DependencyError` when Java is missing (for callers that insist on METEOR)."""
    if not java_available():
        raise DependencyError("METEOR needs Java, which is not installed", "install a JRE, or omit METEOR")
