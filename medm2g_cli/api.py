"""Typed Python API of the inference commands (``translate``, ``synthesize``, ``generate``, ``report``).

The commands only parse options and render; everything else happens here. Each entry point
checks, in this order and before any model is loaded: option values, the weights folder and its
branches, the outputs (exist without ``overwrite``?), the inputs (readable? right modality?).
Only then is the model loaded and run. Every run writes a JSON run report next to its outputs.

Example::

    from medm2g_cli.api import translate_path
    from medm2g_cli.inference.runtime import InferenceSettings
    report = translate_path("mri2ct", Path("t1.nii.gz"), Path("sct.nii.gz"),
                            settings=InferenceSettings(weights=Path("weights/medm2g-demo"), steps=20))
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import __version__, modalities
from .errors import ConfigError, InputError, MedM2GError, OutputError
from .inference.batch import case_output, case_paths, check_case_outputs, list_cases, shard
from .inference.provenance import run_report, sibling, split_name, write_json
from .inference.runtime import (
    InferenceSettings,
    Log,
    auto_batch_size,
    autocast,
    check_branches,
    load_model,
    resolve_weights,
    select_device,
    weights_hash,
)
from .inference.sampling import model_sampling
from .io.atomic import atomic_dir, check_output
from .io.outputs import check_separate, write_marker
from .io.volume import Volume

Progress = Callable[[int, int], None]

OUTPUT_FORMATS = ("nifti", "dicom", "mha", "nrrd")


def _nolog(_: str) -> None:
    return None


# -- shared session: weights, device, model ---------------------------------------------------------


@dataclass
class Session:
    """The weights, device and (lazily loaded) model of one run."""

    settings: InferenceSettings
    weights: Path
    meta: dict[str, Any]
    log: Log = _nolog
    device: Any = None
    model: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    target: str | None = None

    @classmethod
    def open(cls, settings: InferenceSettings, needed: Sequence[str], log: Log = _nolog) -> Session:
        """Validate settings, resolve the weights and check their branches (no model loaded yet).

        ``needed`` lists the input branches, then the output's (which picks the model's sampler
        settings, :mod:`medm2g_cli.inference.sampling`)."""
        settings.validate()
        weights = resolve_weights(settings.weights)
        meta = check_branches(weights, needed)
        model_sampling(meta, str(weights / "medm2g.json"))  # a bad "sampling" block stops here
        return cls(settings, weights, meta, log, target=needed[-1] if needed else None)

    def sampling(self) -> dict[str, Any]:
        """The model's ``sampling`` block as it applies to this session's output branch."""
        return model_sampling(self.meta, target=self.target)

    def sample_config(self) -> Any:
        """Sampler settings: flags, else the model's ``sampling`` block, else Table A3."""
        return self.settings.sample_config(model=self.sampling())

    def load(self) -> Any:
        """Select the device and load the model (once)."""
        if self.model is None:
            import torch

            torch.manual_seed(self.settings.seed)
            self.device = select_device(self.settings.device, self.log)
            t = time.perf_counter()
            self.model = load_model(self.weights, self.device, verify=self.settings.verify,
                                    compile=self.settings.compile, channels_last=self.settings.channels_last)
            self.timings["load_s"] = round(time.perf_counter() - t, 4)
        return self.model

    def autocast(self) -> Any:
        """Autocast context for the chosen precision on the chosen device."""
        return autocast(self.device, self.settings.precision, self.log)

    def batch_size(self, samples: int = 1) -> int:
        """``--batch-size`` or one chosen from free memory."""
        if self.settings.batch_size:
            return self.settings.batch_size
        guided = self.sample_config().guidance != 1.0
        return auto_batch_size(self.device, self.model.image_size, samples, guided)

    def report(self, command: str, inputs: list[Path], outputs: list[Path], extra: dict[str, Any]) -> dict[str, Any]:
        """The run report of this session."""
        return run_report(command, settings=self.settings.as_dict(self.sampling()), device=str(self.device),
                          weights=self.weights, weights_sha256=weights_hash(self.weights), inputs=inputs,
                          outputs=outputs, timings=self.timings, extra=extra)


# -- volumes: reading, checking, writing -----------------------------------------------------------


def _read(path: Path, modality: str | None = None, series: str | None = None) -> Volume:
    from .io import read_volume

    return read_volume(path, modality=modality, series=series)


def output_format(out: Path, fmt: str | None) -> str:
    """``--format`` or the format implied by OUT's suffix (no suffix: a DICOM series folder)."""
    if fmt:
        f = fmt.lower()
        if f in ("nii", "nii.gz"):
            f = "nifti"
        if f not in OUTPUT_FORMATS:
            raise ConfigError(f"unknown output format '{fmt}'", f"use one of: {', '.join(OUTPUT_FORMATS)}")
        return f
    _, suf = split_name(out)
    suf = suf.lower()
    if suf in (".nii", ".nii.gz"):
        return "nifti"
    if suf in (".mha", ".mhd"):
        return "mha"
    if suf in (".nrrd", ".nhdr"):
        return "nrrd"
    if suf == "":
        return "dicom"
    raise ConfigError(f"cannot tell the output format from '{out.name}'",
                      "end OUT with .nii.gz, .mha or .nrrd, give a folder name for DICOM, or pass --format")


def _provenance(target: str, sources: Sequence[str], sess: Session) -> str:
    s = sess.settings.sample_config()  # the model, then the settings that made the output
    return (f"SYNTHETIC {target} from {'+'.join(sources)}; medm2g {__version__}; weights {weights_hash(sess.weights)[:12]}; "
            f"{s.sampler} {s.steps} steps, guidance {s.guidance:g}, eta {s.eta:g}, seed {s.seed}")


def _check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    for p in paths:
        check_output(p, overwrite)


def translate_volume(vol: Volume, direction: str, model: Any, *, settings: InferenceSettings | None = None,
                     samples: int = 1, axis: str = "axial", batch_size: int | None = None,
                     progress: Progress | None = None) -> Any:
    """Translate one in-memory volume with a loaded model; returns a ``TranslationResult``
    (``.mean`` and ``.std`` on the input grid, physical units)."""
    from .inference.pipeline import Source, check_modality, translate_sources

    settings = settings or InferenceSettings()
    src, tgt = parse_direction(direction)
    check_modality(vol, src)
    return translate_sources(model, [Source(src, vol)], tgt, sample=settings.sample_config(), samples=samples,
                             batch_size=batch_size or settings.batch_size or 2, axis=axis, progress=progress)


def parse_direction(direction: str) -> tuple[str, str]:
    """(source, target) of a ``translate`` direction; :class:`ConfigError` listing them if unknown."""
    dirs = modalities.translation_directions()
    key = direction.lower().strip()
    if key not in dirs:
        raise ConfigError(f"unknown direction '{direction}'",
                          f"use one of: {', '.join(sorted(dirs))}")
    return dirs[key]


# -- translate: single case or many -----------------------------------------------------------------


@dataclass
class _Case:
    inp: Path
    out: Path


def translate_path(
    direction: str,
    inp: Path,
    out: Path,
    *,
    settings: InferenceSettings,
    samples: int = 1,
    axis: str = "axial",
    preview: bool = False,
    resume: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    overwrite: bool = False,
    fmt: str | None = None,
    series: str | None = None,
    log: Log = _nolog,
    progress: Progress | None = None,
    anonymize: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """Translate a file, a DICOM folder/zip, a folder of volumes or a .txt list of paths.

    Each case gets an applicability verdict (:mod:`medm2g_cli.inference.applicability`); with
    ``strict`` a case outside the model's domain is refused before any sampling or output.

    ``anonymize`` de-identifies DICOM outputs (PS3.15 Basic Profile, :mod:`medm2g_cli.io.anonymize`).

    Batch inputs write one output per case into the folder ``out``; ``resume`` skips cases whose
    output exists; ``num_parts``/``part_id`` process one shard. Returns the run report, which is
    also written next to the outputs.
    """
    from .inference import applicability as guard
    from .inference.pipeline import AXES, check_modality

    inp, out = Path(inp), Path(out)
    src, tgt = parse_direction(direction)
    if samples < 1:
        raise ConfigError(f"--samples {samples} is not positive", "use 1 or more")
    if axis not in AXES:
        raise ConfigError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    sess = Session.open(settings, [src, tgt], log)
    cases = list_cases(inp)
    batch = cases is not None
    if batch:
        if split_name(out)[1]:
            raise OutputError(f"'{inp}' holds several cases, so OUT must be a folder, not '{out.name}'",
                              "give a folder name with -o")
        norm = output_format(Path("x"), fmt) if fmt else None
        planned = [_Case(p, case_output(p, out, norm)) for p in cases or []]
        # all cases, not only this shard: duplicate or input-equal outputs stop here, before any model work
        check_case_outputs([(c.inp, case_paths(c.out, samples, preview)) for c in planned], [inp, *(cases or [])])
        todo = shard(planned, num_parts, part_id)
        if out.exists() and not out.is_dir():
            raise OutputError(f"output '{out}' exists and is not a folder", "choose another -o")
        if not out.parent.exists():
            raise OutputError(f"output folder '{out.parent}' does not exist", "create it first")
        if strict:  # refuse every out-of-domain case before any output exists or any sampling
            for c in todo:
                v = _read(c.inp, series=series)
                check_modality(v, src, label=f"input '{c.inp.name}'")
                guard.screen([(src, v)], f"input '{c.inp.name}'", axis=axis, strict=True, log=_nolog,
                             image_size=guard.model_image_size(sess.meta))
        if not out.exists():  # a folder we create is ours; never mark an existing one (its other files are the user's)
            out.mkdir()
            write_marker(out)
        skipped = [c for c in todo if resume and c.out.exists()]
        todo = [c for c in todo if not (resume and c.out.exists())]
        report_path = out / ("run_report.json" if num_parts == 1 else f"run_report_part{part_id}.json")
    else:
        if num_parts != 1:
            raise ConfigError("--num-parts needs a folder or list-file input", "pass a folder of cases")
        todo, skipped = [_Case(inp, out)], []
        if resume and out.exists():
            skipped, todo = todo, []
        report_path = sibling(out, "run", ".json")
        check_separate(case_paths(out, samples, preview) + [report_path], [inp])
    # Every output this run will write must be free (or --overwrite) before any model work.
    for c in todo:
        output_format(c.out, fmt)  # an unknown --format or suffix stops here, before any work
        _check_outputs(case_paths(c.out, samples, preview), overwrite)
    if not batch and todo:
        check_output(report_path, overwrite=True)
    results: list[dict[str, Any]] = []
    inputs: list[Path] = []
    outputs: list[Path] = []
    t_all = time.perf_counter()
    first_vol = None
    if not batch and todo:
        # Single case: read and check before loading anything (unreadable or wrong-modality inputs
        # stop here, before the model).
        first_vol = _read(inp, series=series)
        check_modality(first_vol, src)

    def report(error: str | None = None) -> dict[str, Any]:
        sess.timings["total_s"] = round(time.perf_counter() - t_all, 4)
        rep = sess.report("translate", inputs, outputs, {
            "direction": direction, "source": src, "target": tgt, "samples": samples, "axis": axis,
            "cases": results, "skipped": [str(c.inp) for c in skipped],
            "shard": {"num_parts": num_parts, "part_id": part_id}, **({"error": error} if error else {}),
        })
        if todo:
            write_json(rep, report_path)
            rep["run_report"] = str(report_path)
        return rep

    try:
        for i, case in enumerate(todo):
            vol = first_vol if (i == 0 and first_vol is not None) else _read(case.inp, series=series)
            check_modality(vol, src, label=f"input '{case.inp.name}'")
            checked = guard.screen([(src, vol)], f"input '{case.inp.name}'", axis=axis, strict=strict, log=log,
                                   image_size=guard.model_image_size(sess.meta))
            case_out = _translate_one(sess, vol, [src], [1.0], tgt, case.out, fmt, samples=samples, axis=axis,
                                      preview=preview, overwrite=overwrite, progress=progress, anonymize=anonymize,
                                      guard=checked)
            results.append({"input": str(case.inp), **case_out})
            inputs.append(case.inp)
            outputs += [Path(p) for p in case_out["files"]]
            if batch:
                log(f"{case.inp.name} -> {case.out} ({case_out['timings']['model_s']:.1f} s)")
    except BaseException as exc:
        if results:  # a batch that fails midway keeps the record of the cases it finished
            with contextlib.suppress(Exception):
                report(exc.one_line() if isinstance(exc, MedM2GError) else type(exc).__name__)
        raise
    return report()


def _translate_one(sess: Session, vol: Volume | Sequence[Volume], names: Sequence[str], weights: Sequence[float],
                   target: str, out: Path, fmt: str | None, *, samples: int, axis: str, preview: bool,
                   overwrite: bool, progress: Progress | None, anonymize: bool = False,
                   guard: Any = None) -> dict[str, Any]:
    """Run the pipeline on one case and write its outputs; returns a report entry."""
    from .inference.applicability import finish
    from .inference.pipeline import Source, translate_sources

    vols: list[Volume] = list(vol) if isinstance(vol, (list, tuple)) else [cast(Volume, vol)]  # one volume
    model = sess.load()
    if guard is not None:  # the latent check needs the model, and runs before any sampling
        from .inference.latent_check import screen_latents

        screen_latents(guard, model, sess.weights, list(zip(names, vols, strict=True)), axis=axis, log=sess.log)
    bs = sess.batch_size(samples)
    sources = [Source(n, v, w) for n, v, w in zip(names, vols, weights, strict=True)]
    res = translate_sources(model, sources, target, sample=sess.sample_config(), samples=samples,
                            batch_size=bs, axis=axis, autocast=sess.autocast(), progress=progress, log=sess.log)
    from .inference.volio import write_std_map, write_volume
    from .io.dicom_write import case_context

    f, desc, t = output_format(out, fmt), _provenance(target, names, sess), time.perf_counter()
    meta = case_context(vols[0].meta)  # the mean and the std map share one study and frame of reference
    files = [write_volume(res.mean, out, format=f, overwrite=overwrite, source_meta=meta, description=desc,
                          anonymize=anonymize)]
    if res.std is not None:  # DICOM: a Parametric Map
        files.append(write_std_map(res.std, sibling(out, "std"), format=f, overwrite=overwrite, source_meta=meta,
                                   description=desc.replace("SYNTHETIC", "SYNTHETIC UNCERTAINTY (std)", 1),
                                   anonymize=anonymize, weights=sess.weights))
    if preview:
        from .report.preview import translation_preview

        files.append(translation_preview(vols, res.mean, res.std, sibling(out, "preview", ".png"), overwrite))
    res.timings["write_s"] = round(time.perf_counter() - t, 4)
    checked = {} if guard is None else {"applicability": finish(guard, res.std, (names[0], vols[0]),
                                                                res.normalisation["output"], sess.log)}
    return {"output": str(out), "files": [str(p) for p in files], "format": f, "shape": list(res.mean.shape),
            "slices": res.slices, "batch_size": bs, "timings": res.timings, "normalisation": res.normalisation,
            "background_slices": res.background_slices, **checked}



# -- synthesize ---------------------------------------------------------------------------------------


def parse_input_spec(spec: str) -> tuple[str, Path, float | None]:
    """``t1=A.nii.gz`` or ``t1:0.7=A.nii.gz`` -> (contrast, path, weight or None)."""
    if "=" not in spec:
        raise ConfigError(f"--input '{spec}' is not NAME=PATH", "e.g. --input t1=A.nii.gz (or t1:0.6=A.nii.gz)")
    name, path = spec.split("=", 1)
    weight = None
    if ":" in name:
        name, w = name.split(":", 1)
        try:
            weight = float(w)
        except ValueError as exc:
            raise ConfigError(f"--input '{spec}': weight '{w}' is not a number", "e.g. t1:0.6=A.nii.gz") from exc
    name = name.strip().lower()
    mod = modalities.get(name).name
    if modalities.get(mod).spatial_dims != 3:
        raise ConfigError(f"--input '{spec}': {name} is not a volume modality",
                          f"use one of: {', '.join(modalities.MRI_CONTRASTS)}, ct")
    return name, Path(path), weight


def synthesize(
    inputs: Sequence[tuple[str, Path, float | None]],
    target: str,
    out: Path,
    *,
    settings: InferenceSettings,
    register: bool = False,
    samples: int = 1,
    axis: str = "axial",
    preview: bool = False,
    overwrite: bool = False,
    fmt: str | None = None,
    log: Log = _nolog,
    progress: Progress | None = None,
    anonymize: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """Multi-contrast synthesis with composable conditioning (e.g. T1 + T2 -> PD).

    ``anonymize`` de-identifies DICOM outputs (PS3.15 Basic Profile, :mod:`medm2g_cli.io.anonymize`).

    Inputs on another grid than the first are registered to it (rigid, Mattes MI) when
    ``register`` is true and refused otherwise. Weights default to equal shares.
    """
    from .inference.pipeline import check_modality

    if not inputs:
        raise ConfigError("no --input given", "e.g. --input t1=A.nii.gz --input t2=B.nii.gz")
    names = [n for n, _, _ in inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"an input contrast is given twice ({', '.join(names)})", "give each contrast once")
    tgt = target.lower().strip()
    modalities.get(tgt)
    if tgt in names:
        raise ConfigError(f"the target '{tgt}' is also an input", "choose a target that is not an input")
    ws = [w for _, _, w in inputs]
    weights = [1.0 / len(inputs)] * len(inputs) if all(w is None for w in ws) else \
        [w if w is not None else 0.0 for w in ws]
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError("input weights must be non-negative and not all zero", "e.g. t1:0.5=A t2:0.5=B")
    if samples < 1:
        raise ConfigError(f"--samples {samples} is not positive", "use 1 or more")
    sess = Session.open(settings, names + [tgt], log)
    check_separate([*case_paths(out, samples, preview), sibling(out, "run", ".json")], [p for _, p, _ in inputs])
    _check_outputs(case_paths(out, samples, preview), overwrite)
    vols = []
    for name, path, _ in inputs:
        v = _read(path)
        check_modality(v, name, label=f"input {name} ('{path.name}')")
        vols.append(v)
    ref = vols[0]
    registration: list[dict[str, Any]] = []
    for i in range(1, len(vols)):
        v = vols[i]
        same = v.shape == ref.shape and np.allclose(v.affine, ref.affine, atol=1e-3)
        if same:
            continue
        if not register:
            raise InputError(f"input {names[i]} ('{inputs[i][1].name}') is not on the grid of {names[0]} "
                             f"(shape {v.shape} vs {ref.shape})",
                             "pass --register to register it to the first input, or resample it first")
        from .inference.volio import register_to

        resampled, metric = register_to(ref, v)
        vols[i] = ref.with_array(np.asarray(resampled.array, dtype=np.float32), modality=v.modality)
        registration.append({"input": names[i], "metric": metric})
        log(f"registered {names[i]} to {names[0]} (metric {metric:.4f})")
    from .inference import applicability as guard

    checked = guard.screen(list(zip(names, vols, strict=True)), "the inputs", axis=axis, strict=strict, log=log,
                           image_size=guard.model_image_size(sess.meta))
    t = time.perf_counter()
    entry = _translate_one(sess, vols, names, weights, tgt, out, fmt, samples=samples, axis=axis,
                           preview=preview, overwrite=overwrite, progress=progress, anonymize=anonymize,
                           guard=checked)
    sess.timings["total_s"] = round(time.perf_counter() - t, 4)
    rep = sess.report("synthesize", [p for _, p, _ in inputs], [Path(p) for p in entry["files"]], {
        "inputs_spec": [{"name": n, "path": str(p), "weight": w} for (n, p, _), w in zip(inputs, weights, strict=True)],
        "target": tgt, "samples": samples, "registration": registration, "case": entry,
    })
    report_path = write_json(rep, sibling(out, "run", ".json"))
    rep["run_report"] = str(report_path)
    return rep


# -- generate -----------------------------------------------------------------------------------------


# Radiology reports are a few hundred words; anything this long is a pasted file, not a prompt.
MAX_PROMPT_CHARS = 10_000


def _check_prompt(prompt: str) -> str:
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
    log: Log = _nolog,
) -> dict[str, Any]:
    """Generate ``num`` images of ``target`` (xray, ct, mri or an MRI contrast) from a text prompt.

    Writes ``out_dir`` atomically: ``<target>_NNN.png`` (X-ray 8-bit; CT/MRI 16-bit) or
    ``.dcm`` Secondary Capture marked synthetic, ``contact_sheet.png`` and ``generate.json``
    (prompt, settings, files, intensity mapping), plus the run report.
    """
    from .inference.dicom_out import sc_run
    from .inference.images import check_image_options, write_generated
    from .report.preview import contact_sheet, to_uint8

    mod, contrast = modalities.split_target(target)
    if mod not in modalities.IMAGE_MODALITIES:
        raise ConfigError(f"cannot generate images of '{target}'", "use xray, ct or mri (or an MRI contrast)")
    fmt = check_image_options(fmt, num)
    text = _check_prompt(prompt)
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
    from .engine import Condition

    t = time.perf_counter()
    with sess.autocast():
        imgs = model.generate(target, [Condition("text", [text])], num_samples=num, sample=sess.sample_config(),
                              height=size, width=size, batch_size=sess.batch_size(1))
    sess.timings["model_s"] = round(time.perf_counter() - t, 4)
    arr = imgs.float().cpu().numpy()[:, 0]
    files: list[str] = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        previews, mapping, sc_ids = [], None, sc_run(sess.weights)  # one study and series per run
        for i, img in enumerate(arr):
            name, mapping = write_generated(img, mod, tmp, f"{target}_{i:03d}", fmt,
                                            description=f"SYNTHETIC {target}: {text}",
                                            derivation=_provenance(target, ["text"], sess), instance=i + 1,
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
    rep["out_dir"] = str(out_dir)
    return rep


def _sha(p: Path) -> str:
    from .inference.provenance import sha256_path

    return sha256_path(p)


# -- report ---------------------------------------------------------------------------------------------


def report_images(
    paths: Sequence[Path],
    *,
    settings: InferenceSettings,
    decoding: str = "greedy",
    num_beams: int = 4,
    out: Path | None = None,
    overwrite: bool = False,
    log: Log = _nolog,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Generate the report text of each chest X-ray (PNG, JPEG or DICOM). Returns
    ``[{"image", "report", "sha256"}]`` in input order; with ``out``, also writes them as JSON (one
    image and ``.dcm``: a DICOM SR) there and the run report beside it (``<out>_run.json``)."""
    from .engine import Condition
    from .inference.dicom_out import check_report_output, write_reports
    from .inference.images import xray_to_model
    from .inference.provenance import sha256_path

    if decoding not in ("greedy", "beam"):
        raise ConfigError(f"unknown decoding '{decoding}'", "use greedy or beam")
    if num_beams < 1:
        raise ConfigError(f"--num-beams {num_beams} is not positive", "use 1 or more")
    if not paths:
        raise InputError("no images given", "pass one or more PNG/JPEG/DICOM chest X-rays")
    sess = Session.open(settings, ["xray", "text"], log)
    if out is not None:
        check_report_output(out, overwrite, len(paths), inputs=paths)
    from .inference.applicability import guard_xray, model_image_size

    images, metas, checked = [], [], []
    for p in paths:
        vol = _read(Path(p), modality="xray")
        images.append(xray_to_model(vol, p))
        metas.append(vol.meta)  # applicability: before any model work; --strict refuses here
        checked.append(guard_xray(vol, f"image '{Path(p).name}'", image_size=model_image_size(sess.meta),
                                  strict=strict, log=log))
    model = sess.load()
    results = []
    t = time.perf_counter()
    for p, img, ok in zip(paths, images, checked, strict=True):
        x = img if img.shape[-1] == model.image_size else _resize(img, model.image_size)
        with sess.autocast():
            text = model.generate("text", [Condition("xray", x.to(model.device))], sample=sess.sample_config(),
                                  text_method=decoding, num_beams=num_beams)
        results.append({"image": str(p), "report": text[0], "sha256": sha256_path(Path(p)), "applicability": ok})
    sess.timings["model_s"] = round(time.perf_counter() - t, 4)
    if out is not None:  # JSON, or a DICOM Comprehensive SR in the X-ray's study
        write_reports(out, results, metas, sess.weights, {"decoding": decoding, "num_beams": num_beams})
        write_json(sess.report("report", [Path(p) for p in paths], [out],
                               {"decoding": decoding, "num_beams": num_beams,
                                "cases": [{"image": r["image"], "applicability": r["applicability"]} for r in results]}),
                   sibling(out, "run", ".json"))
    return results


def _resize(x: Any, size: int) -> Any:
    import torch.nn.functional as F  # noqa: N812

    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


from .inference.joint import generate_image_report as generate_image_report  # noqa: E402  (re-export)
