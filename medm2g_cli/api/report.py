"""``report``: radiology report text from chest X-rays."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..inference.provenance import sibling, write_json
from ..inference.runtime import InferenceSettings, Log
from .results import ReportResult, XrayReport
from .session import Session, nolog, read_input


def report_images(
    paths: Sequence[Path],
    *,
    settings: InferenceSettings,
    decoding: str = "greedy",
    num_beams: int = 4,
    out: Path | None = None,
    overwrite: bool = False,
    log: Log = nolog,
    strict: bool = False,
) -> ReportResult:
    """Generate the report text of each chest X-ray (PNG, JPEG or DICOM), in input order; with
    ``out``, also writes them as JSON (one image and ``.dcm``: a DICOM SR) there and the run report
    beside it (``<out>_run.json``)."""
    from ..engine import Condition, generate
    from ..inference.dicom_out import check_report_output, write_reports
    from ..inference.images import xray_to_model
    from ..inference.provenance import sha256_path

    if decoding not in ("greedy", "beam"):
        raise ConfigError(f"unknown decoding '{decoding}'", "use greedy or beam")
    if num_beams < 1:
        raise ConfigError(f"--num-beams {num_beams} is not positive", "use 1 or more")
    if not paths:
        raise InputError("no images given", "pass one or more PNG/JPEG/DICOM chest X-rays")
    sess = Session.open(settings, ["xray", "text"], log)
    if out is not None:
        check_report_output(out, overwrite, len(paths), inputs=paths)
    from ..inference.applicability import guard_xray, model_image_size

    images, metas, checked = [], [], []
    for p in paths:
        vol = read_input(Path(p), modality="xray")
        images.append(xray_to_model(vol, p))
        metas.append(vol.meta)  # applicability: before any model work; --strict refuses here
        checked.append(guard_xray(vol, f"image '{Path(p).name}'", image_size=model_image_size(sess.meta),
                                  strict=strict, log=log))
    model = sess.load()
    results: list[XrayReport] = []
    t = time.perf_counter()
    for p, img, ok in zip(paths, images, checked, strict=True):
        x = img if img.shape[-1] == model.image_size else _resize(img, model.image_size)
        with sess.autocast():
            text = generate(model, "text", [Condition("xray", x.to(model.device))], sample=sess.sample_config(),
                            text_method=decoding, num_beams=num_beams)
        results.append(XrayReport(str(p), str(text[0]), sha256_path(Path(p)), ok))
    sess.timings["model_s"] = round(time.perf_counter() - t, 4)
    run_report: Path | None = None
    if out is not None:  # JSON, or a DICOM Comprehensive SR in the X-ray's study
        write_reports(out, [r.as_dict() for r in results], metas, sess.weights,
                      {"decoding": decoding, "num_beams": num_beams})
        run_report = write_json(sess.report("report", [Path(p) for p in paths], [out],
                                            {"decoding": decoding, "num_beams": num_beams,
                                             "cases": [{"image": r.image, "applicability": r.applicability}
                                                       for r in results]}),
                                sibling(out, "run", ".json"))
    return ReportResult(tuple(results), decoding, num_beams, run_report)


def _resize(x: Any, size: int) -> Any:
    import torch.nn.functional as F  # noqa: N812

    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
