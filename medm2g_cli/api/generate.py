"""``generate``: images of a modality from a text prompt."""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__, modalities
from ..errors import ConfigError, InputError
from ..inference.provenance import write_json
from ..inference.runtime import InferenceSettings, Log, weights_hash
from ..io.atomic import atomic_dir, check_output
from .results import GenerateResult
from .session import Session, nolog, provenance_text

# Radiology reports are a few hundred words; anything this long is a pasted file, not a prompt.
MAX_PROMPT_CHARS = 10_000


def check_prompt(prompt: str) -> str:
    """The prompt with whitespace collapsed; :class:`InputError` if empty, not UTF-8 or too long."""
    text = " ".join((prompt or "").split())
    if not text:
        raise InputError("the prompt is empty", 'describe the image, e.g. --prompt "No acute cardiopulmonary process."')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable argv bytes arrive as lone surrogates
        raise InputError("the prompt is not valid UTF-8 text", "pass the prompt as UTF-8 (check the terminal's encoding)") from exc
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is too long ({len(text)} characters, at most {MAX_PROMPT_CHARS})",
                         "give the findings in a few sentences")
    return text


def generate_images(
    target: str,
    prompt: str,
    out_dir: Path,
    *,
    settings: InferenceSettings,
    num: int = 1,
    fmt: str = "png",
    size: int | None = None,
    overwrite: bool = False,
    log: Log = nolog,
) -> GenerateResult:
    """Generate ``num`` images of ``target`` (xray, ct, mri or an MRI contrast) from a text prompt.

    Writes ``out_dir`` atomically: ``<target>_NNN.png`` (X-ray 8-bit; CT/MRI 16-bit) or
    ``.dcm`` Secondary Capture marked synthetic, ``contact_sheet.png`` and ``generate.json``
    (prompt, settings, files, intensity mapping), plus the run report.
    """
    from ..inference.dicom_out import sc_run
    from ..inference.images import check_image_options, write_generated
    from ..report.preview import contact_sheet, to_uint8

    mod, contrast = modalities.split_target(target)
    if mod not in modalities.IMAGE_MODALITIES:
        raise ConfigError(f"cannot generate images of '{target}'", "use xray, ct or mri (or an MRI contrast)")
    fmt = check_image_options(fmt, num)
    text = check_prompt(prompt)
    sess = Session.open(settings, ["text", mod], log)
    check_output(out_dir, overwrite)
    model = sess.load()
    if size is not None:
        mult = model.config.image.autoencoder.downsample_factor * 2 ** (len(model.config.image.block_out_channels) - 1)
        if size < mult or size % mult:
            raise ConfigError(f"--size {size} is not a positive multiple of {mult}", f"use e.g. {model.image_size}")
    n_tok = len(model.tokenizer(text.lower())["input_ids"])
    limit = model.parts["text_encoder"].config.max_position_embeddings
    truncated = n_tok > limit
    if truncated:
        log(f"warning: the prompt has {n_tok} tokens; only the first {limit} are used")
    from ..engine import Condition, generate

    t = time.perf_counter()
    with sess.autocast():
        imgs = generate(model, target, [Condition("text", [text])], num_samples=num, sample=sess.sample_config(),
                        height=size, width=size, batch_size=sess.batch_size(1))
    sess.timings["model_s"] = round(time.perf_counter() - t, 4)
    arr = imgs.float().cpu().numpy()[:, 0]  # type: ignore[union-attr]  # images for an image target
    files: list[str] = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        previews, mapping, sc_ids = [], None, sc_run(sess.weights)  # one study and series per run
        for i, img in enumerate(arr):
            name, mapping = write_generated(img, mod, tmp, f"{target}_{i:03d}", fmt,
                                            description=f"SYNTHETIC {target}: {text}",
                                            derivation=provenance_text(target, ["text"], sess), instance=i + 1,
                                            sc_ids=sc_ids)
            files.append(name)
            previews.append(to_uint8(img, (-1.0, 1.0)))
        contact_sheet(previews, tmp / "contact_sheet.png", overwrite=True)
        sidecar = {"prompt": text, "prompt_truncated": truncated, "target": target, "num": num, "format": fmt,
                   "size": size or model.image_size, "files": files, "intensity_mapping": mapping,
                   "settings": sess.settings.as_dict(sess.sampling()), "synthetic": True,
                   "medm2g": __version__, "weights_sha256": weights_hash(sess.weights)}
        write_json(sidecar, tmp / "generate.json")
        rep = sess.report("generate", [], [], {"prompt": text, "target": target, "num": num, "files": files})
        rep["outputs"] = [{"path": str(out_dir / f), "sha256": _sha(tmp / f)} for f in files]
        write_json(rep, tmp / "run_report.json")
    return GenerateResult(rep, out_dir, tuple(files))


def _sha(p: Path) -> str:
    from ..inference.provenance import sha256_path

    return sha256_path(p)
