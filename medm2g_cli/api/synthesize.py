"""``synthesize``: one MRI contrast from several inputs (composable conditioning, e.g. T1 + T2 -> PD)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import modalities
from ..errors import ConfigError, InputError
from ..inference.batch import case_paths
from ..inference.provenance import sibling, write_json
from ..inference.runtime import InferenceSettings, Log
from ..io.outputs import check_separate
from .results import SynthesisResult
from .session import Progress, Session, check_outputs, nolog, read_input
from .translate import run_case


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
    log: Log = nolog,
    progress: Progress | None = None,
    anonymize: bool = False,
    strict: bool = False,
) -> SynthesisResult:
    """Multi-contrast synthesis with composable conditioning (e.g. T1 + T2 -> PD).

    ``anonymize`` de-identifies DICOM outputs (PS3.15 Basic Profile, :mod:`medm2g_cli.io.anonymize`).

    Inputs on another grid than the first are registered to it (rigid, Mattes MI) when
    ``register`` is true and refused otherwise. Weights default to equal shares.
    """
    from ..inference.modality_check import check_modality

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
    check_outputs(case_paths(out, samples, preview), overwrite)
    vols = []
    for name, path, _ in inputs:
        v = read_input(path)
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
        from ..inference.volio import register_to

        resampled, metric = register_to(ref, v)
        vols[i] = ref.with_array(np.asarray(resampled.array, dtype=np.float32), modality=v.modality)
        registration.append({"input": names[i], "metric": metric})
        log(f"registered {names[i]} to {names[0]} (metric {metric:.4f})")
    from ..inference import applicability as guard

    checked = guard.screen(list(zip(names, vols, strict=True)), "the inputs", axis=axis, strict=strict, log=log,
                           image_size=guard.model_image_size(sess.meta))
    t = time.perf_counter()
    entry = run_case(sess, vols, names, weights, tgt, out, fmt, samples=samples, axis=axis,
                           preview=preview, overwrite=overwrite, progress=progress, anonymize=anonymize,
                           guard=checked)
    sess.timings["total_s"] = round(time.perf_counter() - t, 4)
    rep = sess.report("synthesize", [p for _, p, _ in inputs], list(entry.files), {
        "inputs_spec": [{"name": n, "path": str(p), "weight": w} for (n, p, _), w in zip(inputs, weights, strict=True)],
        "target": tgt, "samples": samples, "registration": registration, "case": entry.as_report(),
    }, withhold=[p for _, p, _ in inputs] if anonymize else ())
    report_path = write_json(rep, sibling(out, "run", ".json"))
    return SynthesisResult(rep, report_path, entry, tuple(registration))
