"""Typed Python API of the commands (``translate``, ``synthesize``, ``generate``, ``report``, ``evaluate``, ``demo``).

The commands only parse options and render; everything else happens here. Each entry point
checks, in this order and before any model is loaded: option values, the weights folder and its
branches, the outputs (exist without ``overwrite``?), the inputs (readable? right modality?).
Only then is the model loaded and run. Every run writes a JSON run report next to its outputs and
returns a typed result (:mod:`medm2g_cli.api.results`).

One module per concept: :mod:`.session` (settings, weights, device, model), :mod:`.translate` (and
:mod:`.series`, the DICOM node's step),
:mod:`.synthesize`, :mod:`.generate`, :mod:`.joint` (image + report together), :mod:`.report`,
:mod:`.evaluation`, :mod:`.results`; and :mod:`.demo` (``run_demo``, imported from there: the
demo runs the entry points above).

Example::

    from medm2g_cli.api import translate_path
    from medm2g_cli.inference.runtime import InferenceSettings
    result = translate_path("mri2ct", Path("t1.nii.gz"), Path("sct.nii.gz"),
                            settings=InferenceSettings(weights=Path("weights/medm2g-demo"), steps=20))
    print(result.cases[0].files, result.run_report)
"""

from __future__ import annotations

from ..choices import OUTPUT_FORMATS
from .evaluation import EvaluateResult, evaluate, score_fid, score_images, score_texts
from .generate import MAX_PROMPT_CHARS, generate_images
from .joint import JOINT_IMAGES, generate_image_report
from .report import report_images
from .results import (
    CaseOutput,
    GenerateResult,
    ImageReportResult,
    ReportPair,
    ReportResult,
    SynthesisResult,
    TranslateResult,
    XrayReport,
)
from .session import Progress, Session, output_format
from .synthesize import parse_input_spec, synthesize
from .training import RunSummary, TrainConfig, describe, finetune, pretrain
from .translate import parse_direction, translate_path, translate_volume

__all__ = [
    "JOINT_IMAGES",
    "MAX_PROMPT_CHARS",
    "OUTPUT_FORMATS",
    "CaseOutput",
    "EvaluateResult",
    "GenerateResult",
    "ImageReportResult",
    "Progress",
    "ReportPair",
    "ReportResult",
    "RunSummary",
    "Session",
    "SynthesisResult",
    "TrainConfig",
    "TranslateResult",
    "XrayReport",
    "describe",
    "evaluate",
    "finetune",
    "generate_image_report",
    "generate_images",
    "output_format",
    "parse_direction",
    "parse_input_spec",
    "pretrain",
    "report_images",
    "score_fid",
    "score_images",
    "score_texts",
    "synthesize",
    "translate_path",
    "translate_volume",
]
