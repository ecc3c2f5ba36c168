"""Slice-wise translation of volumes, streaming slice batch by slice batch.

The path of one volume::

    input grid --(reorient to RAS)--> canonical --(modality preset)--> [-1, 1]
      --(slices along --axis)--> pad to square, resize to the model size --> batches
      --> engine.generate (K samples per slice) --> resize back, crop --> reassemble
      --> de-normalise (CT in HU) --> back to the input orientation --> the input grid

Only the input's array is reoriented; the output is written with the *input* affine, so it lies on
the input grid voxel for voxel (the class of bug in BraSyn_tutorial#3 cannot happen: there is no
second affine to get wrong). Each batch is decoded and written into a preallocated output array,
so memory is set by the batch size, not by the number of slices.

Noise seeds are per slice and per sample (``seed + slice_index * K + k``), so outputs do not depend
on the batch size or on how a volume is split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import modalities
from ..data.transforms import SliceGeometry, normalisation_for, target_normalisation
from ..errors import ConfigError, InputError
from ..io.orientation import AXES, to_canonical_array
from ..io.volume import Volume

# -- the translation loop ---------------------------------------------------------------------------


@dataclass
class Source:
    """One conditioning volume: a modality or MRI contrast name, its pixels and mixing weight."""

    name: str
    volume: Volume
    weight: float = 1.0


@dataclass
class TranslationResult:
    """Outputs on the input grid (physical units) and what was done."""

    mean: Volume
    std: Volume | None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1
    slices: int = 0
    normalisation: dict[str, Any] = field(default_factory=dict)
    background_slices: int = 0  # slices written as the background value without the model


def translate_sources(
    model: Any,
    sources: Sequence[Source],
    target: str,
    *,
    sample: Any,
    samples: int = 1,
    batch_size: int = 2,
    axis: str = "axial",
    autocast: Any = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    background_fraction: float | None = None,
) -> TranslationResult:
    """Translate pixel-aligned ``sources`` (all on the grid of the first) to ``target``.

    ``sample`` is the engine's SampleConfig (its seed is the base seed); ``samples`` draws K samples
    per slice and returns their mean plus the per-voxel standard deviation. Returns volumes on the
    first source's grid with the first source's affine and metadata. Slices where every source is
    below ``background_fraction`` of its window (default
    :data:`~medm2g_cli.inference.background.BACKGROUND_FRACTION`; 0 = model every slice) are
    written as the background value (std 0) without running the model.
    """
    import contextlib

    import torch

    from ..engine import Condition, generate
    from .background import BACKGROUND_FRACTION, background_slices, background_value, foreground_batches

    if not sources:
        raise ConfigError("no input volumes", "give at least one input")
    if axis not in AXES:
        raise ConfigError(f"unknown axis '{axis}'", f"use one of: {', '.join(AXES)}")
    if samples < 1:
        raise ConfigError(f"--samples {samples} is not positive", "use 1 or more")
    ref = sources[0].volume
    if ref.array.ndim != 3:
        raise InputError(f"translation needs a 3-D volume, got shape {ref.shape}", "pass a 3-D volume")
    for s in sources[1:]:
        if s.volume.shape != ref.shape or not np.allclose(s.volume.affine, ref.affine, atol=1e-3):
            raise InputError(f"input '{s.name}' is not on the grid of '{sources[0].name}'",
                             "pass --register to resample it onto the first input")
    t0 = time.perf_counter()
    # Streaming: the inputs are only *viewed* in canonical order (flips/transposes, no copy) and
    # normalised batch by batch; the outputs are preallocated on the input grid and written
    # through canonical views. Memory is the inputs, the outputs and one batch — no full-volume
    # temporaries (bench figure 2).
    moved, norms, ornt = [], [], None
    for s in sources:
        arr = np.asarray(s.volume.array)
        preset = modalities.get(s.name).preset
        # Percentiles/min-max are taken on float32 values as before (one temporary copy for
        # MRI; a fixed CT window needs none).
        stats = arr if preset is None or preset.mode == "window" else np.asarray(arr, dtype=np.float32)
        norms.append(normalisation_for(stats, s.name))
        del stats
        c, ornt = to_canonical_array(arr, s.volume.affine)
        moved.append(np.moveaxis(c, AXES[axis], 0))  # [n_slices, h, w] view
    out_norm = target_normalisation(target, norms)
    ax = AXES[axis]
    n, h, w = moved[0].shape
    geom = SliceGeometry(h, w, model.image_size)
    mean_arr = np.empty(ref.shape, dtype=np.float32)
    std_arr = np.empty(ref.shape, dtype=np.float32) if samples > 1 else None
    assert ornt is not None
    mean = np.moveaxis(to_canonical_array(mean_arr, ref.affine)[0], ax, 0)  # writable views
    std = None if std_arr is None else np.moveaxis(to_canonical_array(std_arr, ref.affine)[0], ax, 0)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    t_prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    base_seed = int(sample.seed)
    eta_logged = False
    skip = background_slices(moved, norms, BACKGROUND_FRACTION if background_fraction is None else background_fraction)
    bg = background_value(out_norm)
    for k in np.flatnonzero(skip):
        mean[k] = bg
        if std is not None:
            std[k] = 0.0
    done = int(skip.sum())
    if progress is not None and done:
        progress(done, n)
    for start, stop in foreground_batches(skip, batch_size):
        conds = [Condition(s.name, geom.to_model(nm.forward(m[start:stop])).to(model.device), weight=s.weight)
                 for s, m, nm in zip(sources, moved, norms, strict=True)]
        sample.seed = base_seed + start * samples  # per-slice seeds: independent of the batch size
        with ctx, torch.inference_mode():
            imgs = generate(model, target, conds, num_samples=samples, sample=sample,
                            batch_size=(stop - start) * samples)
        phys = out_norm.inverse(geom.from_model(imgs))  # [(stop-start)*K, h, w]
        phys = phys.reshape(stop - start, samples, h, w)
        mean[start:stop] = phys.mean(axis=1)
        if std is not None:
            std[start:stop] = phys.std(axis=1)
        done += stop - start
        if progress is not None:
            progress(done, n)
        if log is not None and not eta_logged and done < n:
            # ETA from the first measured batch (performance.md: warn about overnight CPU jobs).
            eta_logged = True
            eta = (time.perf_counter() - t1) / (stop - start) * (n - done)
            if eta > 3600:
                log(f"warning: about {eta / 3600:.1f} h left for {n} slices at this speed — use a GPU, "
                    "--sampler dpm++ --steps 20, or --precision bf16 on CPUs with AVX512-BF16")
    sample.seed = base_seed
    t_model = time.perf_counter() - t1

    tgt_mod = modalities.split_target(target)[0]
    mean_vol = ref.with_array(mean_arr, modality=tgt_mod)
    std_vol = ref.with_array(std_arr, modality=tgt_mod) if std_arr is not None else None
    return TranslationResult(
        mean=mean_vol, std=std_vol, batch_size=batch_size, slices=n, background_slices=int(skip.sum()),
        timings={"prepare_s": round(t_prep, 4), "model_s": round(t_model, 4),
                 "per_slice_s": round(t_model / max(n, 1), 4)},
        normalisation={"inputs": [vars(x) for x in norms], "output": vars(out_norm)},
    )
