"""Domain randomisation of brain phantoms (the idea of SynthSeg / SynthSR, Billot et al. 2023, Iglesias et al. 2023).

A phantom subject is re-rendered from its label map so that a model trained on it sees many MRI
"renderings" of one anatomy instead of one: every label's intensity is drawn per variant (a Gaussian
mixture with one component per label, around the phantom's own tissue signal of each sequence, or
fully at random), followed by a gamma contrast change, a smooth multiplicative bias field, a thick-slice
/ anisotropic acquisition (blur + downsample along a random axis, then back to the grid or kept on the
low-resolution grid), Rician noise, a cropped field of view / partial coverage and an axis
permutation / flip with the affine updated so that every voxel keeps its world position.

The CT (and any contrast listed in :attr:`RandomiseConfig.clean`) is never re-rendered, blurred or
noised: it is the subject's own image with the same crop / grid / orientation applied by pure indexing,
so the target stays label-exact in HU and voxel-aligned with the randomised MRI. Everything is drawn
from one seeded :class:`numpy.random.Generator`: the same seed gives byte-identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError
from .brain import MRI_CONTRASTS, MRI_SCALE, BrainSubject, _finding, _smooth_field
from .tissues import LABELS, signal_table

Range = tuple[float, float]


@dataclass(frozen=True)
class RandomiseConfig:
    """Ranges of the randomisation; every ``(lo, hi)`` is sampled uniformly unless stated otherwise.

    Intensities are in the phantom's signal units (~0-1, written as ``x MRI_SCALE`` int16 values).
    Defaults keep each sequence recognisable (a T1 stays T1-like, a T2 T2-like) while varying its
    contrast, bias, noise, resolution, coverage and orientation over a clinically realistic span.
    """

    contrasts: tuple[str, ...] = MRI_CONTRASTS
    """MRI keys re-rendered with random intensities."""
    clean: tuple[str, ...] = ()
    """MRI keys kept as rendered by the phantom (only the spatial transform), e.g. a synthesis target."""
    intensity_spread: float = 0.06
    """Each label's mean is drawn in ``[s / (1 + spread), s * (1 + spread)]`` around the phantom's signal ``s``
    (small: the phantom T1's WM/GM ratio is only 1.08, and 0.06 inverts it in ~5 % of draws; the contrast as
    a whole varies through ``gamma``, and ``fully_random_prob`` gives SynthSeg's arbitrary contrasts)."""
    intensity_floor: float = 0.02
    """Minimum width of a label's range (background and bone have ~0 signal)."""
    label_ranges: dict[str, dict[int, Range]] | None = None
    """Explicit per-contrast, per-label ranges that replace the ones derived from the phantom's signals."""
    fully_random_prob: float = 0.0
    """Probability that a contrast gets every label's mean from U(0, 1) (SynthSeg's contrast-agnostic draw)."""
    label_std: Range = (0.0, 0.03)
    """Within-label standard deviation, relative to the label's mean (the Gaussian mixture's spread)."""
    gamma: Range = (0.6, 2.0)
    """Gamma exponent (log-uniform) applied to the image normalised by its brightest label: a power law on the
    label means, so > 1 strengthens every contrast (e.g. an MPRAGE-like T1, a long-TE T2) and < 1 flattens it."""
    bias_max: float = 0.35
    """Standard deviation of the log bias field's control values is drawn in ``[0, bias_max]``."""
    bias_points: int = 4
    """Control points per axis of the bias field (lower = smoother)."""
    noise: Range = (0.0, 0.04)
    """Rician noise sigma relative to the brightest label mean."""
    partial_volume: Range = (0.3, 0.6)
    """Gaussian sigma (grid voxels) blurring every rendering: the soft tissue edges of a real acquisition
    (the label map is hard, so without it every boundary would be a one-voxel step)."""
    thick_prob: float = 0.6
    """Probability of a thick-slice acquisition along one random axis."""
    thickness_mm: Range = (3.0, 8.0)
    """Slice thickness of that acquisition (never thinner than the grid)."""
    inplane_factor: Range = (1.0, 1.3)
    """Resolution loss on the other two axes, as a multiple of the grid spacing."""
    lowres: bool = False
    """Return the thick-slice grid (with its affine) instead of resampling back to the phantom grid."""
    crop_prob: float = 0.5
    """Probability of a cropped field of view (up to ``crop_max`` of each axis cut on each side)."""
    crop_max: float = 0.15
    partial_prob: float = 0.3
    """Probability of partial coverage: one side of one axis loses ``partial_range`` of its extent."""
    partial_range: Range = (0.15, 0.4)
    keep_min: float = 0.5
    """No axis keeps less than this fraction of its voxels."""
    orient_prob: float = 0.5
    """Probability of a random axis permutation and flips (the affine follows)."""

    @classmethod
    def keeping(cls, clean: tuple[str, ...]) -> RandomiseConfig:
        """The default ranges with the contrasts ``clean`` kept as rendered and the other MRI keys randomised."""
        return cls(contrasts=tuple(c for c in MRI_CONTRASTS if c not in clean), clean=clean)

    def __post_init__(self) -> None:
        bad = [c for c in (*self.contrasts, *self.clean) if c not in MRI_CONTRASTS]
        if bad:
            raise ConfigError(f"unknown MRI contrast {bad[0]!r} in the randomisation",
                              f"choose from {', '.join(MRI_CONTRASTS)}")
        both = set(self.contrasts) & set(self.clean)
        if both:
            raise ConfigError(f"contrast {sorted(both)[0]!r} is both randomised and clean", "list it in one of the two")
        for name in ("fully_random_prob", "thick_prob", "crop_prob", "partial_prob", "orient_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be a probability (got {p})", "use a value between 0 and 1")
        for name in ("partial_volume", "label_std", "gamma", "noise", "thickness_mm", "inplane_factor", "partial_range"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ConfigError(f"{name} range {lo}..{hi} is invalid", "give (low, high) with 0 <= low <= high")
        if self.gamma[0] <= 0 or self.inplane_factor[0] < 1.0 or not 0.0 < self.keep_min <= 1.0:
            raise ConfigError("gamma must be > 0, inplane_factor >= 1 and keep_min in (0, 1]",
                              "fix the randomisation ranges")


@dataclass
class _Spatial:
    """The spatial part of one draw: crop box, acquisition factors and orientation."""

    start: np.ndarray
    stop: np.ndarray
    factors: np.ndarray  # resolution loss per axis (>= 1), in grid voxels
    offset: np.ndarray  # first low-resolution sample per axis, in grid voxels
    pv: float  # partial-volume blur (Gaussian sigma, grid voxels)
    perm: tuple[int, ...]
    flips: tuple[bool, ...]
    thick_axis: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


def label_ranges(contrast: str, cfg: RandomiseConfig) -> dict[int, Range]:
    """Range of each label's mean intensity for ``contrast`` (label 0 = background), before gamma."""
    if cfg.label_ranges and contrast in cfg.label_ranges:
        return dict(cfg.label_ranges[contrast])
    sig = np.concatenate([[0.0], signal_table(contrast)]).astype(float)
    out: dict[int, Range] = {}
    for lab in LABELS:
        lo = float(sig[lab]) / (1.0 + cfg.intensity_spread)
        hi = max(float(sig[lab]) * (1.0 + cfg.intensity_spread), lo + cfg.intensity_floor)
        out[lab] = (lo, hi)
    return out


def _draw_spatial(rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray,
                  cfg: RandomiseConfig) -> _Spatial:
    n = np.array(shape)
    cut_lo, cut_hi = np.zeros(3), np.zeros(3)
    if rng.random() < cfg.crop_prob:
        cut_lo, cut_hi = rng.uniform(0, cfg.crop_max, 3), rng.uniform(0, cfg.crop_max, 3)
    partial: dict[str, Any] | None = None
    if rng.random() < cfg.partial_prob:
        ax, side, frac = int(rng.integers(3)), int(rng.integers(2)), float(rng.uniform(*cfg.partial_range))
        (cut_hi if side else cut_lo)[ax] += frac
        partial = {"axis": ax, "side": "high" if side else "low", "fraction": round(frac, 3)}
    # never keep less than keep_min of an axis: scale both cuts down together
    total = cut_lo + cut_hi
    scale = np.where(total > 1 - cfg.keep_min, (1 - cfg.keep_min) / np.maximum(total, 1e-9), 1.0)
    start = np.floor(cut_lo * scale * n).astype(int)
    stop = n - np.floor(cut_hi * scale * n).astype(int)

    factors, thick_axis = np.ones(3), None
    if rng.random() < cfg.thick_prob:
        thick_axis = int(rng.integers(3))
        factors = rng.uniform(*cfg.inplane_factor, 3)
        factors[thick_axis] = max(1.0, float(rng.uniform(*cfg.thickness_mm)) / float(spacing[thick_axis]))
    if cfg.lowres:
        factors = np.maximum(1.0, np.rint(factors))  # exact sub-grid: the CT is taken, never interpolated
    offset = np.array([float(rng.uniform(0, f)) for f in factors])
    if cfg.lowres:
        offset = np.floor(offset)

    pv = float(rng.uniform(*cfg.partial_volume))
    perm: tuple[int, ...] = (0, 1, 2)
    flips: tuple[bool, ...] = (False, False, False)
    if rng.random() < cfg.orient_prob:
        perm = tuple(int(v) for v in rng.permutation(3))
        flips = tuple(bool(v) for v in rng.random(3) < 0.5)
    info = {"crop_start": start.tolist(), "crop_stop": stop.tolist(), "partial": partial,
            "thick_axis": thick_axis, "factors": [round(float(f), 3) for f in factors],
            "voxel_mm": [round(float(f * s), 3) for f, s in zip(factors, spacing, strict=True)],
            "partial_volume_sigma": round(pv, 3), "perm": list(perm), "flips": list(flips), "lowres": cfg.lowres}
    return _Spatial(start, stop, factors, offset, pv, perm, flips, thick_axis, info)


def _crop(arr: np.ndarray, sp: _Spatial) -> np.ndarray:
    return arr[tuple(slice(int(a), int(b)) for a, b in zip(sp.start, sp.stop, strict=True))]


def _lowres_take(arr: np.ndarray, sp: _Spatial) -> np.ndarray:
    """The low-resolution grid's voxels of an array on the (cropped) grid, by indexing only."""
    if not sp.info["lowres"]:
        return arr
    for ax in range(3):
        k, o = int(sp.factors[ax]), int(sp.offset[ax])
        if k > 1:
            arr = np.take(arr, np.arange(o, arr.shape[ax], k), axis=ax)
    return arr


def _orient(arr: np.ndarray, sp: _Spatial) -> np.ndarray:
    out = np.transpose(arr, sp.perm)
    for d, f in enumerate(sp.flips):
        if f:
            out = np.flip(out, axis=d)
    return np.ascontiguousarray(out)


def _affine(affine: np.ndarray, shape: tuple[int, ...], sp: _Spatial) -> np.ndarray:
    """Affine of the output grid: crop origin, low-resolution spacing, then permutation / flips."""
    a = np.array(affine, dtype=float)
    a[:3, 3] = a[:3, :3] @ sp.start + a[:3, 3]
    grid = [int(b - s) for s, b in zip(sp.start, sp.stop, strict=True)]
    if sp.info["lowres"]:
        for ax in range(3):
            k, o = int(sp.factors[ax]), int(sp.offset[ax])
            a[:3, 3] += a[:3, ax] * o
            a[:3, ax] *= k
            grid[ax] = len(range(o, grid[ax], k))
    # output index j -> cropped index i: i[perm[d]] = j[d], or n - 1 - j[d] when axis d is flipped
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for d, src in enumerate(sp.perm):
        m[src, d] = -1.0 if sp.flips[d] else 1.0
        m[src, 3] = grid[src] - 1 if sp.flips[d] else 0.0
    return a @ m


def _sample_axis(arr: np.ndarray, axis: int, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``arr`` at fractional indices ``pos`` along ``axis`` (clamped at the ends)."""
    n = arr.shape[axis]
    p = np.clip(pos, 0, n - 1)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (p - i0).astype(np.float32)
    shp = [1] * arr.ndim
    shp[axis] = len(p)
    w = w.reshape(shp)
    return np.take(arr, i0, axis=axis) * (1 - w) + np.take(arr, i1, axis=axis) * w


def _acquire(img: np.ndarray, sp: _Spatial) -> np.ndarray:
    """Blur with the partial volume and the slice profile (FWHM = factor voxels), sample on the low-resolution grid."""
    from scipy import ndimage as ndi

    if np.all(sp.factors <= 1.0) and sp.pv <= 0:
        return img
    sigma = [float(np.hypot(f / 2.3548, sp.pv)) if f > 1.0 else sp.pv for f in sp.factors]
    out = ndi.gaussian_filter(img, sigma, mode="nearest")
    for ax, (f, o) in enumerate(zip(sp.factors, sp.offset, strict=True)):
        if f > 1.0:
            out = _sample_axis(out, ax, np.arange(o, img.shape[ax], f))
    return out


def _back_to_grid(img: np.ndarray, shape: tuple[int, ...], sp: _Spatial) -> np.ndarray:
    for ax, (f, o) in enumerate(zip(sp.factors, sp.offset, strict=True)):
        if f > 1.0:
            img = _sample_axis(img, ax, (np.arange(shape[ax]) - o) / f)
    return img


def _intensities(rng: np.random.Generator, contrast: str,
                 cfg: RandomiseConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Per-label means and standard deviations (index = label value) of one contrast, and what was drawn."""
    labels = sorted(LABELS)
    fully = bool(rng.random() < cfg.fully_random_prob)
    ranges = {lab: (0.0, 1.0) for lab in labels} if fully else label_ranges(contrast, cfg)
    means = np.array([rng.uniform(*ranges[lab]) for lab in labels], np.float32)
    stds = means * rng.uniform(*cfg.label_std, len(labels)).astype(np.float32)
    info = {"fully_random": fully,
            "label_ranges": {LABELS[lab]: [round(v, 4) for v in ranges[lab]] for lab in labels},
            "label_means": {LABELS[lab]: float(means[lab]) for lab in labels}}
    return means, stds, info


def _render(rng: np.random.Generator, labels: np.ndarray, contrast: str, sp: _Spatial,
            cfg: RandomiseConfig) -> tuple[np.ndarray, dict[str, Any]]:
    means, stds, info = _intensities(rng, contrast, cfg)
    top = float(means.max()) or 1.0
    img = means[labels]
    if stds.max() > 0:
        img = img + stds[labels] * rng.standard_normal(labels.shape, dtype=np.float32)
    amp = float(rng.uniform(0.0, cfg.bias_max))
    if amp > 0:
        img = img * np.exp(_smooth_field(rng, labels.shape, cfg.bias_points, amp))
    gamma = float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1]))))
    img = top * np.clip(img / top, 0.0, None) ** gamma
    img = _acquire(img.astype(np.float32), sp)
    sigma = float(rng.uniform(*cfg.noise)) * top
    if sigma > 0:  # Rician magnitude noise, added at the acquired resolution
        n1 = rng.normal(0, sigma, img.shape).astype(np.float32)
        n2 = rng.normal(0, sigma, img.shape).astype(np.float32)
        img = np.sqrt((img + n1) ** 2 + n2**2)
    if not cfg.lowres:
        img = _back_to_grid(img, labels.shape, sp)
    out = np.clip(np.rint(img * MRI_SCALE), 0, 32767).astype(np.int16)
    info.update({"gamma": round(gamma, 3), "bias_std": round(amp, 3), "noise_sigma": round(sigma, 4)})
    return out, info


def randomise_subject(subject: BrainSubject, rng: np.random.Generator | int,
                      config: RandomiseConfig | None = None, subject_id: str | None = None) -> BrainSubject:
    """One randomised rendering of ``subject`` (a new :class:`BrainSubject`; the input is not modified).

    ``rng`` is a Generator or a seed. The MRI keys of ``config.contrasts`` are re-rendered from the label
    map; the CT and ``config.clean`` keys are the subject's own images, cropped / sub-sampled / reoriented
    by indexing only. ``labels``, ``affine`` and the brain mask follow the same spatial transform, so a
    voxel of any output maps to the same world point as the source voxel it came from.
    ``meta["randomisation"]`` records every draw (per-contrast label means, gamma, bias, noise, grid).
    """
    cfg = config or RandomiseConfig()
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    spacing = np.sqrt((np.asarray(subject.affine, float)[:3, :3] ** 2).sum(0))
    sp = _draw_spatial(gen, subject.shape, spacing, cfg)

    def spatial(arr: np.ndarray) -> np.ndarray:
        return _orient(_lowres_take(_crop(arr, sp), sp), sp)

    labels = _crop(subject.labels, sp)
    images: dict[str, np.ndarray] = {}
    per_contrast: dict[str, Any] = {}
    for c in cfg.contrasts:
        img, info = _render(gen, labels, c, sp, cfg)
        images[c] = _orient(img, sp)
        per_contrast[c] = info
    for c in (*cfg.clean, "ct"):
        if c in subject.images:
            images[c] = spatial(subject.images[c])
    meta = {k: v for k, v in subject.meta.items() if not k.startswith("_")}
    meta["source"] = subject.subject_id
    meta["randomisation"] = {**sp.info, "contrasts": per_contrast}
    if "_intra_axial" in subject.meta:
        meta["_intra_axial"] = spatial(np.asarray(subject.meta["_intra_axial"]))
    affine = _affine(subject.affine, subject.shape, sp)
    out_labels = spatial(subject.labels)
    finding = subject.finding
    if subject.has_tumour and not np.isin(out_labels, (6, 7, 8)).any():  # the crop left the lesion out
        finding, meta["tumour"] = _finding(None), None
    return BrainSubject(subject_id or f"{subject.subject_id}-rand", subject.seed, images, out_labels,
                        affine, finding, meta)


__all__ = ["RandomiseConfig", "label_ranges", "randomise_subject"]
