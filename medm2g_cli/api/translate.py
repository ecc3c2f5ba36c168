"""``translate``: one volume to another modality or MRI contrast on the input grid, for a single case
or many (a folder, a list file; resumable, shardable)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import choices, modalities
from ..errors import ConfigError, MedM2GError, OutputError
from ..inference.batch import case_output, case_paths, check_case_outputs, list_cases, shard
from ..inference.provenance import sibling, split_name, write_json
from ..inference.runtime import InferenceSettings, Log
from ..io.atomic import check_output
from ..io.outputs import check_separate, write_marker
from ..io.volume import Volume
from .results import CaseOutput, TranslateResult
from .session import Progress, Session, check_outputs, nolog, output_format, provenance_text, read_input

if TYPE_CHECKING:
    from .model_cache import ModelCache


def translate_volume(vol: Volume, direction: str, model: Any, *, settings: InferenceSettings | None = None,
                     samples: int = 1, axis: str = "axial", batch_size: int | None = None,
                     progress: Progress | None = None) -> Any:
    """Translate one in-memory volume with a loaded model; returns a ``TranslationResult``
    (``.mean`` and ``.std`` on the input grid, physical units)."""
    from ..inference.modality_check import check_modality
    from ..inference.pipeline import Source, translate_sources

    settings = settings or InferenceSettings()
    src, tgt = parse_direction(direction)
    check_modality(vol, src)
    return translate_sources(model, [Source(src, vol)], tgt, sample=settings.sample_config(), samples=samples,
                             batch_size=batch_size or settings.batch_size or 2, axis=axis, progress=progress)


def parse_direction(direction: str) -> tuple[str, str]:
    """(source, target) of a ``translate`` direction; :class:`ConfigError` listing them if unknown."""
    return modalities.translation_directions()[str(choices.parse_direction(direction).value)]


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
    log: Log = nolog,
    progress: Progress | None = None,
    anonymize: bool = False,
    strict: bool = False,
    cache: ModelCache | None = None,
) -> TranslateResult:
    """Translate a file, a DICOM folder/zip, a folder of volumes or a .txt list of paths.

    Each case gets an applicability verdict (:mod:`medm2g_cli.inference.applicability`); with
    ``strict`` a case outside the model's domain is refused before any sampling or output.

    ``anonymize`` de-identifies DICOM outputs (PS3.15 Basic Profile, :mod:`medm2g_cli.io.anonymize`).

    Batch inputs write one output per case into the folder ``out``; ``resume`` skips cases whose
    output exists; ``num_parts``/``part_id`` process one shard. Returns the cases written and the
    run report, which is also written next to the outputs.

    ``cache`` (:class:`~medm2g_cli.api.model_cache.ModelCache`) reuses a model loaded by an earlier
    call with the same weights folder and settings (``dicom-node``); without one the model is loaded here.
    """
    from ..inference import applicability as guard
    from ..inference.modality_check import check_modality
    from ..io.orientation import AXES

    inp, out = Path(inp), Path(out)
    src, tgt = parse_direction(direction)
    if samples < 1:
        raise ConfigError(f"--samples {samples} is not positive", "use 1 or more")
    if axis not in AXES:
        raise ConfigError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    sess = Session.open(settings, [src, tgt], log, cache=cache)
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
            from ..inference.latent_check import screen_latents

            def screened(c: _Case) -> tuple[Volume, Any]:
                v = read_input(c.inp, series=series)
                check_modality(v, src, label=f"input '{c.inp.name}'")
                return v, guard.screen([(src, v)], f"input '{c.inp.name}'", axis=axis, strict=True, log=nolog,
                                       image_size=guard.model_image_size(sess.meta))

            for c in todo:  # the input checks of every case first: no model work for a refused input
                screened(c)
            # Then the latent check, which needs the model (the run loads it anyway): a case refused on
            # its latents stops the batch before the first case is written. Each case is checked again
            # when it runs (about 0.5 s each), for its run report entry.
            for c in todo:
                v, res = screened(c)
                screen_latents(res, sess.load(), sess.weights, [(src, v)], axis=axis, log=nolog)
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
        check_outputs(case_paths(c.out, samples, preview), overwrite)
    if not batch and todo:
        check_output(report_path, overwrite=True)
    results: list[CaseOutput] = []
    inputs: list[Path] = []
    outputs: list[Path] = []
    t_all = time.perf_counter()
    first_vol = None
    if not batch and todo:
        # Single case: read and check before loading anything (unreadable or wrong-modality inputs
        # stop here, before the model).
        first_vol = read_input(inp, series=series)
        check_modality(first_vol, src)

    def report(error: str | None = None) -> TranslateResult:
        sess.timings["total_s"] = round(time.perf_counter() - t_all, 4)
        rep = sess.report("translate", inputs, outputs, {
            "direction": direction, "source": src, "target": tgt, "samples": samples, "axis": axis,
            "cases": [c.as_report() for c in results], "skipped": [str(c.inp) for c in skipped],
            "shard": {"num_parts": num_parts, "part_id": part_id}, **({"error": error} if error else {}),
        }, withhold=[inp, *(cases or [])] if anonymize else ())
        if todo:
            write_json(rep, report_path)
        return TranslateResult(rep, report_path if todo else None, tuple(results), tuple(c.inp for c in skipped))

    try:
        for i, case in enumerate(todo):
            vol = first_vol if (i == 0 and first_vol is not None) else read_input(case.inp, series=series)
            check_modality(vol, src, label=f"input '{case.inp.name}'")
            checked = guard.screen([(src, vol)], f"input '{case.inp.name}'", axis=axis, strict=strict, log=log,
                                   image_size=guard.model_image_size(sess.meta))
            case_out = run_case(sess, vol, [src], [1.0], tgt, case.out, fmt, samples=samples, axis=axis,
                                      preview=preview, overwrite=overwrite, progress=progress, anonymize=anonymize,
                                      guard=checked)
            results.append(replace(case_out, input=case.inp))
            inputs.append(case.inp)
            outputs += case_out.files
            if batch:
                log(f"{case.inp.name} -> {case.out} ({case_out.timings['model_s']:.1f} s)")
    except BaseException as exc:
        if results:  # a batch that fails midway keeps the record of the cases it finished
            with contextlib.suppress(Exception):
                report(exc.one_line() if isinstance(exc, MedM2GError) else type(exc).__name__)
        raise
    return report()


def run_case(sess: Session, vol: Volume | Sequence[Volume], names: Sequence[str], weights: Sequence[float],
             target: str, out: Path, fmt: str | None, *, samples: int, axis: str, preview: bool,
             overwrite: bool, progress: Progress | None, anonymize: bool = False,
             guard: Any = None) -> CaseOutput:
    """Run the pipeline on one case and write its outputs (shared by translate and synthesize)."""
    from ..inference.applicability import finish
    from ..inference.pipeline import Source, translate_sources

    vols: list[Volume] = list(vol) if isinstance(vol, (list, tuple)) else [cast(Volume, vol)]  # one volume
    model = sess.load()
    if guard is not None:  # the latent check needs the model, and runs before any sampling
        from ..inference.latent_check import screen_latents

        screen_latents(guard, model, sess.weights, list(zip(names, vols, strict=True)), axis=axis, log=sess.log)
    bs = sess.batch_size(samples)
    sources = [Source(n, v, w) for n, v, w in zip(names, vols, weights, strict=True)]
    res = translate_sources(model, sources, target, sample=sess.sample_config(), samples=samples,
                            batch_size=bs, axis=axis, autocast=sess.autocast(), progress=progress, log=sess.log)
    from ..inference.volio import write_std_map, write_volume
    from ..io.dicom_write import case_context

    f, desc, t = output_format(out, fmt), provenance_text(target, names, sess), time.perf_counter()
    meta = case_context(vols[0].meta)  # the mean and the std map share one study and frame of reference
    files = [write_volume(res.mean, out, format=f, overwrite=overwrite, source_meta=meta, description=desc,
                          anonymize=anonymize)]
    if res.std is not None:  # DICOM: a Parametric Map
        files.append(write_std_map(res.std, sibling(out, "std"), format=f, overwrite=overwrite, source_meta=meta,
                                   description=desc.replace("SYNTHETIC", "SYNTHETIC UNCERTAINTY (std)", 1),
                                   anonymize=anonymize, weights=sess.weights))
    if preview:
        from ..report.preview import translation_preview

        files.append(translation_preview(vols, res.mean, res.std, sibling(out, "preview", ".png"), overwrite))
    res.timings["write_s"] = round(time.perf_counter() - t, 4)
    checked = None if guard is None else finish(guard, res.std, (names[0], vols[0]), res.normalisation["output"],
                                                 sess.log)
    return CaseOutput(output=out, files=tuple(Path(p) for p in files), format=f, shape=tuple(res.mean.shape),
                      slices=res.slices, batch_size=bs, timings=res.timings, normalisation=res.normalisation,
                      background_slices=res.background_slices, applicability=checked)
