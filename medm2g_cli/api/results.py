"""Typed results of the API entry points.

Each result carries the typed fields callers use (output files, the run report's path) and the run
report itself (``report``: the JSON document written next to the outputs, a free-form provenance
record). ``to_dict()`` is what ``--json`` prints; it is the run report plus where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CaseOutput:
    """One translated or synthesised case: its outputs and what the pipeline did."""

    output: Path
    files: tuple[Path, ...]
    format: str
    shape: tuple[int, ...]
    slices: int
    batch_size: int
    timings: dict[str, float]
    normalisation: dict[str, Any]
    background_slices: int
    applicability: dict[str, Any] | None = None
    input: Path | None = None

    def as_report(self) -> dict[str, Any]:
        """The case's entry in the run report."""
        entry = {"output": str(self.output), "files": [str(p) for p in self.files], "format": self.format,
                 "shape": list(self.shape), "slices": self.slices, "batch_size": self.batch_size,
                 "timings": self.timings, "normalisation": self.normalisation,
                 "background_slices": self.background_slices}
        if self.applicability is not None:
            entry["applicability"] = self.applicability
        return entry if self.input is None else {"input": str(self.input), **entry}


def _with_path(report: dict[str, Any], key: str, path: Path | None) -> dict[str, Any]:
    return report if path is None else {**report, key: str(path)}


@dataclass(frozen=True)
class TranslateResult:
    """``translate_path``: one entry per case translated, the cases skipped (``resume``)."""

    report: dict[str, Any]
    run_report: Path | None
    cases: tuple[CaseOutput, ...]
    skipped: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The run report and where it was written (nothing was written when every case was skipped)."""
        return _with_path(self.report, "run_report", self.run_report)


@dataclass(frozen=True)
class SynthesisResult:
    """``synthesize``: the one synthesised case and how the inputs were registered."""

    report: dict[str, Any]
    run_report: Path
    case: CaseOutput
    registration: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The run report and where it was written."""
        return _with_path(self.report, "run_report", self.run_report)


@dataclass(frozen=True)
class GenerateResult:
    """``generate_images``: the files written into ``out_dir`` (names relative to it)."""

    report: dict[str, Any]
    out_dir: Path
    files: tuple[str, ...]

    @property
    def run_report(self) -> Path:
        """Where the run report was written."""
        return self.out_dir / "run_report.json"

    def to_dict(self) -> dict[str, Any]:
        """The run report and the output folder."""
        return _with_path(self.report, "out_dir", self.out_dir)


@dataclass(frozen=True)
class ReportPair:
    """One generated (image, report) pair of ``generate_image_report``."""

    image: str
    report_file: str
    report: str

    def as_dict(self) -> dict[str, str]:
        """The pair as listed in ``reports.json``."""
        return {"image": self.image, "report_file": self.report_file, "report": self.report}


@dataclass(frozen=True)
class ImageReportResult(GenerateResult):
    """``generate_image_report``: the files and the (image, report) pairs."""

    pairs: tuple[ReportPair, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The run report, the output folder and the pairs."""
        return {**super().to_dict(), "pairs": [p.as_dict() for p in self.pairs]}


@dataclass(frozen=True)
class XrayReport:
    """The generated report of one chest X-ray."""

    image: str
    report: str
    sha256: str
    applicability: Any

    def as_dict(self) -> dict[str, Any]:
        """The entry as written in the reports JSON."""
        return {"image": self.image, "report": self.report, "sha256": self.sha256,
                "applicability": self.applicability}


@dataclass(frozen=True)
class ReportResult:
    """``report_images``: one report per image in input order; ``run_report`` when ``out`` was given."""

    reports: tuple[XrayReport, ...]
    decoding: str
    num_beams: int
    run_report: Path | None = None
