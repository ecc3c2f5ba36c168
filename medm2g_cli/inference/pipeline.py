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
from ..errors import ConfigError, InputError, ModalityError
from ..io.volume import Volume

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Slicing axis -> array axis in canonical RAS orientation."""

# Share of voxels below -500 above which a volume is taken to be a CT in HU (air, lungs and the
# table are < -500 HU in every CT; MRI magnitudes are never negative).
CT_AIR_FRACTION = 0.05
# Arbitrary-unit range given to an MRI synthesised from a non-MRI source (no input scale exists).
MRI_SYNTH_RANGE = (0.0, 1000.0)


# -- orientation --------------------------------------------------------------------------------


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The array reoriented to RAS (axis permutations and flips only) and the nibabel orientation
    used, for :func:`from_canonical`. Oblique affines map to their closest RAS axes."""
    import nibabel.orientations as nio

    ornt = nio.io_orientation(affine)
    return nio.apply_orientation(array, ornt), ornt


def from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`to_canonical` (back to the input's voxel order)."""
    import nibabel.orientations as nio

    inv = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.io_orientation(_ornt_affine(ornt)))
    return np.ascontiguousarray(nio.apply_orientation(array, inv))


def _ornt_affine(ornt: np.ndarray) -> np.ndarray:
    # An affine whose orientation is ``ornt``: enough for io_orientation to recover it.
    aff = np.zeros((4, 4))
    for i, (ax, flip) in enumerate(ornt):
        aff[int(ax), i] = flip
    aff[3, 3] = 1
    return aff


# -- intensities ----------------------------------------------------------------------------------


@dataclass
class Normalisation:
    """How one volume was mapped to [-1, 1] (so the mapping can be inverted)."""

    modality: str
    low: float
    high: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Physical units -> [-1, 1] (clipped)."""
        span = max(self.high - self.low, 1e-6)
        return np.clip((x.astype(np.float32) - self.low) / span * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """[-1, 1] -> physical units."""
        return ((y.astype(np.float32) + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)


def normalisation_for(array: np.ndarray, modality: str) -> Normalisation:
    """The registry preset of ``modality`` applied to ``array``: a fixed HU window for CT,
    per-volume percentiles for MRI, min/max for X-ray."""
    spec = modalities.get(modality)
    preset = spec.preset
    if preset is None:
        raise ConfigError(f"modality '{modality}' has no intensity preset", "use an imaging modality")
    if preset.mode == "window":
        return Normalisation(spec.name, preset.low, preset.high)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise InputError("the input has no finite voxel values", "check the file")
    if preset.mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(finite, [preset.low, preset.high]))
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0  # a constant image: any non-empty range keeps the mapping invertible
    return Normalisation(spec.name, lo, hi)


def target_normalisation(target: str, sources: Sequence[Normalisation]) -> Normalisation:
    """Mapping of the *output* from [-1, 1] to physical units.

    CT: the HU window (outputs in HU). MRI from an MRI source: the first MRI source's range (the
    output looks like a sibling contrast of the input). MRI from a CT: a fixed arbitrary-unit range.
    """
    mod = modalities.split_target(target)[0]
    preset = modalities.get(mod).preset
    assert preset is not None
    if preset.mode == "window":
        return Normalisation(mod, preset.low, preset.high)
    for s in sources:
        if s.modality == mod:
            return Normalisation(mod, s.low, s.high)
    return Normalisation(mod, *MRI_SYNTH_RANGE)


def check_modality(vol: Volume, expected: str, label: str = "input") -> None:
    """Refuse a volume whose DICOM Modality tag or intensities contradict ``expected``.

    A CT given to mri2ct is caught from the tag (0008,0060) or, for NIfTI, from the intensity range
    (many voxels below -500 can only be HU). Raises :class:`ModalityError` before any model work.
    """
    if np.asarray(vol.array).ndim != 3 or vol.meta.get("format") == "picture":
        raise InputError(f"{label} has shape {vol.shape}; translation needs a 3-D volume",
                         "pass a volume (NIfTI, DICOM series, MHA/NRRD), not a 2-D image")
    mod = modalities.split_target(expected)[0]
    tag = vol.meta.get("Modality") or vol.meta.get("modality_tag") or (vol.meta.get("dicom") or {}).get("Modality")
    tagged = modalities.from_dicom(tag) if isinstance(tag, str) else None
    declared = tagged or (vol.modality if vol.modality in modalities.MODALITIES else None)
    if declared is not None and declared != mod:
        src = f"its DICOM Modality is {tag}" if tagged else f"it is marked as {declared}"
        raise ModalityError(f"{label} is {declared.upper()} ({src}) but this direction needs {mod.upper()}",
                            "choose the matching direction (see `medm2g translate --help`) or the right file")
    n_finite, n_air, vmin = _air_stats(np.asarray(vol.array))
    if n_finite == 0:
        raise InputError(f"{label} has no finite voxel values", "check the file")
    if n_finite != np.asarray(vol.array).size:
        # NaN/Inf would spread through the normalisation and the model into the whole output.
        raise InputError(f"{label} has {np.asarray(vol.array).size - n_finite} NaN/Inf voxel(s)",
                         "replace them (e.g. with 0 or the background value) before translating")
    air = n_air / n_finite
    if mod == "mri" and air > CT_AIR_FRACTION:
        raise ModalityError(
            f"{label} looks like a CT ({air:.0%} of voxels are below -500, which only Hounsfield units reach) "
            "but this direction needs an MRI",
            "use a CT direction such as ct2mri, or pass the MRI file",
        )
    if mod == "ct" and tagged is None and vmin >= 0:
        raise ModalityError(f"{label} has no negative values, so it is not a CT in Hounsfield units",
                            "use an MRI direction such as mri2ct, or convert the CT to HU")


def _air_stats(arr: np.ndarray, chunk: int = 16) -> tuple[int, int, float]:
    """(finite voxels, voxels below -500, minimum finite value), computed slab by slab along the
    first axis so no full-volume temporary is made (memory stays bounded for big volumes)."""
    n_finite, n_air, vmin = 0, 0, float("inf")
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    for i in range(0, flat.shape[0], chunk):
        slab = flat[i:i + chunk]
        if slab.dtype.kind == "f":
            slab = slab[np.isfinite(slab)]
        if slab.size:
            n_finite += int(slab.size)
            n_air += int(np.count_nonzero(slab < -500))
            vmin = min(vmin, float(slab.min()))
    return n_finite, n_air, vmin


# -- geometry of slices -----------------------------------------------------------------------------


@dataclass
class SliceGeometry:
    """Pad an (h, w) slice to a square and resize it to the model size, and back exactly.

    A slice that fits inside the model size is only padded (to ``size``), never upsampled:
    upsampling adds no information, and the bilinear round trip blurs one-voxel structures (a 2 mm
    skull lost 40 HU MAE to it at 128 px), whereas padding keeps the round trip exact. Larger slices
    are padded to a square and downsampled (antialiased).
    """

    h: int
    w: int
    size: int

    @property
    def side(self) -> int:
        return max(self.h, self.w, self.size)

    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding to the square side (centred)."""
        dh, dw = self.side - self.h, self.side - self.w
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2

    def to_model(self, slices: np.ndarray, fill: float = -1.0) -> Any:
        """[B, h, w] in [-1, 1] -> tensor [B, 1, size, size] (background pads with ``fill``)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        t, b, left, r = self.pads()
        x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
        x = F.pad(x, (left, r, t, b), value=fill)
        if self.side != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.side > self.size)
        return x

    def from_model(self, x: Any) -> np.ndarray:
        """Tensor [B, 1, size, size] -> [B, h, w] (resize back, crop the padding)."""
        import torch.nn.functional as F  # noqa: N812

        x = x.float().cpu()
        if self.side != self.size:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False,
                              antialias=self.size > self.side)
        t, _, left, _ = self.pads()
        return x[:, 0, t:t + self.h, left:left + self.w].numpy()


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
        c, ornt = to_canonical(arr, s.volume.affine)
        moved.append(np.moveaxis(c, AXES[axis], 0))  # [n_slices, h, w] view
    out_norm = target_normalisation(target, norms)
    ax = AXES[axis]
    n, h, w = moved[0].shape
    geom = SliceGeometry(h, w, model.image_size)
    mean_arr = np.empty(ref.shape, dtype=np.float32)
    std_arr = np.empty(ref.shape, dtype=np.float32) if samples > 1 else None
    assert ornt is not None
    mean = np.moveaxis(to_canonical(mean_arr, ref.affine)[0], ax, 0)  # writable views
    std = None if std_arr is None else np.moveaxis(to_canonical(std_arr, ref.affine)[0], ax, 0)
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
