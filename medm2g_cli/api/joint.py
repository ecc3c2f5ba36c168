"""Joint generation of an image and its report from one prompt (``medm2g generate xray+report``).

The engine's :meth:`MedM2G.generate_joint` denoises both latents together, each branch attending to
the other's current latent, so the X-ray and the report are drawn as a pair rather than one after
the other. This module is the typed API around it; it follows
``generate_images``: checks before any model work, one atomic output folder, a run report.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from ..inference.provenance import sha256_path, write_json
from ..inference.runtime import InferenceSettings, Log, weights_hash
from ..io.atomic import atomic_dir, check_output
from .generate import check_prompt
from .results import ImageReportResult, ReportPair
from .session import Session, nolog, provenance_text

JOINT_IMAGES = ("xray",)
"""Image targets ``generate <image>+report`` accepts (the chest branch is the one trained with reports)."""


def generate_image_report(
    prompt: str,
    out_dir: Path,
    *,
    settings: InferenceSettings,
    image: str = "xray",
    num: int = 1,
    fmt: str = "png",
    decoding: str = "greedy",
    num_beams: int = 4,
    overwrite: bool = False,
    log: Log = nolog,
) -> ImageReportResult:
    """Generate ``num`` (image, report) pairs together from a text prompt.

    Writes ``out_dir`` atomically: ``<image>_NNN.png`` (or ``.dcm`` Secondary Capture marked synthetic)
    with ``<image>_NNN.txt`` holding its generated report, ``reports.json`` (every pair),
    ``contact_sheet.png``, ``generate.json`` (prompt, settings, files) and ``run_report.json``.
    The same seed gives byte-identical PNG and text files.
    """
    from ..engine import Condition, generate_joint
    from ..inference.dicom_out import sc_run
    from ..inference.images import check_image_options, write_generated
    from ..report.preview import contact_sheet, to_uint8

    image = image.lower().strip()
    if image not in JOINT_IMAGES:
        raise ConfigError(f"cannot generate '{image}' together with a report",
                          f"use one of: {', '.join(t + '+report' for t in JOINT_IMAGES)}")
    fmt = check_image_options(fmt, num)
    if decoding not in ("greedy", "beam"):
        raise ConfigError(f"unknown decoding '{decoding}'", "use greedy or beam")
    if num_beams < 1:
        raise ConfigError(f"--num-beams {num_beams} is not positive", "use 1 or more")
    text = check_prompt(prompt)
    sess = Session.open(settings, ["text", image], log)
    check_output(out_dir, overwrite)
    model = sess.load()
    t = time.perf_counter()
    with sess.autocast():
        pair = generate_joint(model, (image, "text"), [Condition("text", [text])], num_samples=num,
                              sample=sess.settings.sample_config(), text_method=decoding, num_beams=num_beams)
    sess.timings["model_s"] = round(time.perf_counter() - t, 4)
    imgs = pair[image].float().cpu().numpy()[:, 0]  # type: ignore[union-attr]
    reports = [str(r) for r in pair["text"]]
    files: list[str] = []
    entries: list[ReportPair] = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        previews, mapping, sc_ids = [], None, sc_run(sess.weights)  # one study and series per run
        for i, (img, rep_text) in enumerate(zip(imgs, reports, strict=True)):
            name = f"{image}_{i:03d}"
            file, mapping = write_generated(img, image, tmp, name, fmt, description=f"SYNTHETIC {image}: {text}",
                                            derivation=provenance_text(f"{image}+report", ["text"], sess),
                                            instance=i + 1, sc_ids=sc_ids)
            files.append(file)
            (tmp / f"{name}.txt").write_text(rep_text + "\n", encoding="utf-8")
            files.append(f"{name}.txt")
            entries.append(ReportPair(files[-2], f"{name}.txt", rep_text))
            previews.append(to_uint8(img, (-1.0, 1.0)))
        contact_sheet(previews, tmp / "contact_sheet.png", overwrite=True)
        write_json({"prompt": text, "pairs": [e.as_dict() for e in entries], "synthetic": True}, tmp / "reports.json")
        sidecar = {"prompt": text, "target": f"{image}+report", "num": num, "format": fmt, "decoding": decoding,
                   "num_beams": num_beams, "size": model.image_size, "files": files, "intensity_mapping": mapping,
                   "settings": sess.settings.as_dict(), "synthetic": True, "medm2g": __version__,
                   "weights_sha256": weights_hash(sess.weights)}
        write_json(sidecar, tmp / "generate.json")
        rep = sess.report("generate", [], [], {"prompt": text, "target": f"{image}+report", "num": num,
                                               "files": files, "reports": reports})
        rep["outputs"] = [{"path": str(out_dir / f), "sha256": sha256_path(tmp / f)} for f in files]
        write_json(rep, tmp / "run_report.json")
    return ImageReportResult(rep, out_dir, tuple(files), pairs=tuple(entries))
