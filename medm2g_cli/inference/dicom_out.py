"""DICOM outputs of the inference commands that are not image series: the model's identity in
headers, one study/series per ``generate`` run, and ``report -o X.dcm`` as a DICOM SR.

The model is named by its weights hash only (never a path): ``medm2g weights <sha256[:12]>``; the
SR's observer device UID is derived from the same hash, so one model is one device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.atomic import atomic_path, check_output
from .runtime import weights_hash


def model_name(weights: Path) -> str:
    """The model as named in DICOM headers (Manufacturer's Model Name, SR observer device)."""
    return f"medm2g weights {weights_hash(weights)[:12]}"


def sc_run(weights: Path) -> dict[str, Any]:
    """Keyword arguments for ``write_secondary_capture`` shared by all images of one run."""
    from pydicom.uid import generate_uid

    from ..io.dicom_write import case_context

    return {"study": case_context(None), "series_uid": str(generate_uid()), "model_name": model_name(weights)}


def is_sr_output(out: Path) -> bool:
    """``report -o`` writes a DICOM SR when the name ends in ``.dcm`` (else JSON)."""
    return out.suffix.lower() == ".dcm"


def check_report_output(out: Path, overwrite: bool, n_images: int, inputs: Sequence[str | Path] = ()) -> None:
    """``report -o``: writable, and one image for a ``.dcm`` (an SR holds the report of one X-ray),
    checked before any work."""
    check_output(out, overwrite, inputs=inputs)
    if is_sr_output(out) and n_images != 1:
        raise ConfigError(f"-o '{out.name}' is one DICOM SR but {n_images} images were given",
                          "pass one image per .dcm report, or end -o with .json for several")


def write_report_sr(text: str, source_meta: dict[str, Any], out: Path, weights: Path) -> Path:
    """Write ``text`` as a Comprehensive SR referencing the X-ray (its study when it was DICOM)."""
    from pydicom.uid import generate_uid

    from ..io.dicom_objects import build_report_sr

    name = model_name(weights)
    meta = source_meta if source_meta.get("format") == "dicom" else None
    sr = build_report_sr(text, source_meta=meta, model_name=name,
                         device_uid=str(generate_uid(entropy_srcs=[weights_hash(weights)])))
    with atomic_path(out, overwrite=True) as tmp:  # the caller checked ``out`` before the model ran
        sr.save_as(str(tmp), enforce_file_format=True)
    return out


def write_reports(out: Path, results: list[dict[str, Any]], metas: list[dict[str, Any]], weights: Path,
                  settings: dict[str, Any]) -> Path:
    """``report -o``: the reports as JSON (with ``settings``), or the one report as a DICOM SR."""
    from .provenance import write_json

    if is_sr_output(out):
        return write_report_sr(results[0]["report"], metas[0], out, weights)
    write_json({"reports": results, **settings, "synthetic": True}, out)
    return out
