"""Result tables shaped like the paper's, plus the files every evaluation writes.

This module builds plain data (headers and string rows) and Markdown; the command layer turns
the same rows into a rich table (only commands import rich).

Files written by :func:`write_results` into one output folder, atomically (all or nothing):
``summary.json`` (metrics, N, protocol, settings), ``per_case.csv`` (one row per subject / report)
and ``results.md`` (this run next to the supplement's published numbers).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..safetext import csv_cell
from .published import PublishedRow, published_for

# metric key -> (column label, decimals)
METRIC_LABELS: dict[str, tuple[str, int]] = {
    "psnr": ("PSNR (dB)", 2),
    "ssim": ("SSIM (%)", 2),
    "mae": ("MAE (HU)", 1),
    "psnr_nanmean_slices": ("PSNR slice nanmean (dB)", 2),
    "BLEU_1": ("BLEU-1", 3),
    "BLEU_2": ("BLEU-2", 3),
    "BLEU_3": ("BLEU-3", 3),
    "BLEU_4": ("BLEU-4", 3),
    "METEOR": ("METEOR", 3),
    "ROUGE_L": ("ROUGE-L", 3),
    "CIDEr": ("CIDEr", 3),
    "fid": ("FID (↓)", 2),
}


def fmt(mean: float | None, std: float | None = None, decimals: int = 2) -> str:
    """``mean ± std`` (or just ``mean``), ``–`` for missing, ``inf``/``nan`` spelled out."""
    if mean is None:
        return "–"
    if not math.isfinite(mean):
        return str(mean)
    text = f"{mean:.{decimals}f}"
    if std is not None and math.isfinite(std):
        text += f" ± {std:.{decimals}f}"
    return text


def _metric_values(metrics: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    for key, v in metrics.items():
        if isinstance(v, dict):
            out[key] = (float(v["mean"]), None if v.get("std") is None else float(v["std"]))
        else:
            out[key] = (float(v), None)
    return out


def result_table(metrics: dict[str, Any], *, label: str, n: int | None = None,
                 published: Sequence[PublishedRow] = ()) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: this run first, then published rows (same metric columns, ``–`` when a
    table did not report a metric)."""
    ours = _metric_values(metrics)
    keys = [k for k in METRIC_LABELS if k in ours]
    headers = ["Method", "Source", *(METRIC_LABELS[k][0] for k in keys)]
    src = f"this run (N={n})" if n is not None else "this run"
    rows = [[label, src, *(fmt(*ours[k], decimals=METRIC_LABELS[k][1]) for k in keys)]]
    for row in published:
        cells = [fmt(*row.metrics[k], decimals=METRIC_LABELS[k][1]) if k in row.metrics else "–" for k in keys]
        if all(c == "–" for c in cells):
            continue
        rows.append([row.method, row.source.replace("MedM2G supplement ", "suppl. "), *cells])
    return headers, rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]) + "\n"


def results_markdown(title: str, summary: dict[str, Any], *, dataset: str | None, task: str | None,
                     setting: str | None = None, label: str = "medm2g") -> str:
    """The ``results.md`` text: this run's table next to the published numbers, plus the protocol."""
    published = published_for(dataset, task, setting) if dataset else []
    n = summary.get("n_subjects", summary.get("n_reports", summary.get("n_pred")))
    headers, rows = result_table(summary["metrics"], label=label, n=n, published=published)
    parts = [f"# {title}\n", markdown_table(headers, rows)]
    notes = [f"- {r.method} ({r.source}): {r.note}" for r in published if r.note]
    if dataset and not published:
        parts.append(f"\nNo published numbers for dataset '{dataset}'" + (f", task '{task}'" if task else "") + ".\n")
    parts.append("\n## Protocol\n")
    for key in ("protocol", "aggregation", "dataset", "max_seq_length", "n_subjects", "n_slices", "n_reports",
                "n_pred", "n_ref", "mask", "modality"):
        if key in summary and summary[key] is not None:
            parts.append(f"- {key}: {summary[key]}\n")
    for key, value in (summary.get("settings") or {}).items():
        parts.append(f"- {key}: {value}\n")
    for note in summary.get("notes") or []:
        parts.append(f"- note: {note}\n")
    if notes:
        parts.append("\n## Notes on the published numbers\n" + "\n".join(notes) + "\n")
    parts.append("\nPublished numbers were produced with the authors' own data splits and preprocessing; "
                 "compare with care.\n")
    return "".join(parts)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Per-case rows as CSV text (columns: the union of keys, in first-seen order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        # Ids and report text come from the data: neutralise cells a spreadsheet would run as formulas.
        w.writerow({k: csv_cell(v) for k, v in r.items()})
    return buf.getvalue()


def write_results(out_dir: Path, summary: dict[str, Any], per_case: Sequence[dict[str, Any]], markdown: str,
                  overwrite: bool = False) -> list[Path]:
    """Write summary.json, per_case.csv and results.md into ``out_dir`` as one atomic folder."""
    from ..io.atomic import atomic_dir

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n", encoding="utf-8")
        (tmp / "per_case.csv").write_text(csv_text(per_case), encoding="utf-8")
        (tmp / "results.md").write_text(markdown, encoding="utf-8")
    return [Path(out_dir) / n for n in ("summary.json", "per_case.csv", "results.md")]


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
