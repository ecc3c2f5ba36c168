"""``evaluate``: the paper's metrics, next to the published numbers — a model on a prepared split
(:func:`evaluate`) or outputs made elsewhere (:func:`score_images`, :func:`score_texts`,
:func:`score_fid`). With ``out``, each writes summary.json, per_case.csv and results.md there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.atomic import check_output

RESULT_FILES = ("summary.json", "per_case.csv", "results.md")


@dataclass(frozen=True)
class EvaluateResult:
    """The scores (``report``: a :class:`medm2g_cli.metrics.evaluate_model.EvalReport`, its table
    and summary) and the files written (none without ``out``)."""

    report: Any
    files: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The summary, plus the files written (what ``--json`` prints)."""
        payload = dict(self.report.summary)
        if self.files:
            payload["files"] = [str(p) for p in self.files]
        return payload


def _written(report: Any, out: Path | None, overwrite: bool) -> EvaluateResult:
    if out is None:
        return EvaluateResult(report)
    from ..metrics.tables import write_results

    return EvaluateResult(report, tuple(write_results(out, report.summary, report.per_case, report.markdown,
                                                      overwrite=overwrite)))


def evaluate(dataset: str | None, task: str, data: Path, weights: Path | None, *, split: str = "test",
             out: Path | None = None, fid_weights: Path | None = None, steps: int | None = None,
             guidance: float | None = None, sampler: str | None = None, seed: int = 0, device: str = "cpu",
             batch_size: int | None = None, overwrite: bool = False, max_subjects: int | None = None,
             meteor: bool = True, target: str | None = None) -> EvaluateResult:
    """Run a model on a prepared split and score it like the paper (``medm2g eval``)."""
    from ..metrics.evaluate_model import run_model_eval

    report = run_model_eval(dataset, task, data, weights, split, out, fid_weights=fid_weights, steps=steps,
                            guidance=guidance, sampler=sampler, seed=seed, device=device,
                            batch_size=batch_size or 8, overwrite=overwrite, max_subjects=max_subjects,
                            meteor=meteor, target=target)
    return EvaluateResult(report, tuple(out / n for n in RESULT_FILES) if out else ())


def score_images(pred: Path, ref: Path, *, protocol: str = "default", mask: str = "none", modality: str = "mri",
                 hu_range: tuple[float, float] = (-1024.0, 3071.0), dataset: str | None = None,
                 task: str | None = None, setting: str | None = None, out: Path | None = None,
                 overwrite: bool = False) -> EvaluateResult:
    """PSNR and SSIM (%), plus MAE in HU for CT, of predictions against references matched by name."""
    from ..metrics.evaluate_model import image_report
    from ..metrics.protocols import evaluate_images

    if out is not None:
        check_output(out, overwrite, inputs=[pred, ref])
    ev = evaluate_images(pred, ref, protocol=protocol, modality=modality.lower(), mask=mask.lower(),
                         hu_range=(float(hu_range[0]), float(hu_range[1])))
    return _written(image_report(ev, dataset=dataset, task=task, setting=setting), out, overwrite)


def score_texts(pred: Path, ref: Path, *, dataset: str = "iu-xray", max_length: str = "medm2g", meteor: bool = True,
                out: Path | None = None, overwrite: bool = False) -> EvaluateResult:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D of report texts (.jsonl, matched by id), scored as R2Gen does."""
    from ..metrics.evaluate_model import text_report
    from ..metrics.text import evaluate_texts, read_jsonl

    if out is not None:
        check_output(out, overwrite, inputs=[pred, ref])
    limit: Any = max_length.lower()
    if limit == "none":
        limit = None
    elif limit not in ("medm2g", "r2gen"):
        try:
            limit = int(limit)
        except ValueError:
            raise ConfigError(f"--max-length '{max_length}' is not valid", "use medm2g, r2gen, none or an integer") from None
    ev = evaluate_texts(read_jsonl(pred, "prediction"), read_jsonl(ref, "reference"), dataset=dataset,
                        max_length=limit, meteor=meteor)
    return _written(text_report(ev), out, overwrite)


def score_fid(pred: Path, ref: Path, *, fid_weights: Path | None = None, batch_size: int = 16, device: str = "cpu",
              dataset: str | None = None, task: str | None = None, out: Path | None = None,
              overwrite: bool = False) -> EvaluateResult:
    """FID with the standard Inception-v3 (2015-12-05) weights from a local file."""
    from ..metrics.evaluate_model import fid_report
    from ..metrics.fid import compute_fid, resolve_fid_weights

    resolve_fid_weights(fid_weights)
    if out is not None:
        check_output(out, overwrite, inputs=[pred, ref])
    res = compute_fid(pred, ref, fid_weights, batch_size=batch_size, device=device)
    return _written(fid_report(res, dataset=dataset, task=task), out, overwrite)
