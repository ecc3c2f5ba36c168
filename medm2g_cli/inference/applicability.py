"""Applicability guard: is an input inside the domain the model was trained on?

Each inference case gets ``{"verdict": "ok" | "warn", "score": float, "reasons": [...]}`` in its run
report. The checks are label-free statistics of the *input* (computed before any sampling) and,
when K > 1 samples are drawn, of the K-sample spread (after sampling):

* contrast signature (MRI): the bulk of the head against its brightest voxels. In a T2 the
  brightest tissue (CSF) is a small class far above the brain, so the median of the head is low
  relative to its top percentile; in T1, PD and FLAIR the brain is the bright bulk;
* body region: the foreground's physical size (a head is at most about 21 cm long) and its shape
  (a head is longer front-to-back than wide; a trunk is wider than deep);
* field of view: a volume that covers only part of the head (thin slab, top slices, a box inside
  the brain);
* resolution: the share of the model's frame the head spans after the slice is padded/resized to
  the model size (slices are padded, not resampled, so the voxel size sets the head's size in model
  pixels), and the slice thickness;
* after sampling: the mean per-voxel std of K samples inside the head, relative to the output range.

* latent distance (after the model is loaded, before sampling; needs ``latent_reference.json`` in
  the model folder, else listed in ``not_checked``): :mod:`medm2g_cli.inference.latent_check`.

A CT given as MRI is refused earlier, with an error, by
:func:`medm2g_cli.inference.modality_check.check_modality`.

Every check yields a deviation ``d`` scaled so that ``d > 1`` is outside the training range; the
score is ``1 / (1 + max d)`` (1 = typical, below 0.5 = warn), so ``warn`` iff some ``d > 1``.
The thresholds are the constants below; each comment says where its number comes from. "Phantom"
means :func:`medm2g_cli.data.phantom.generate_brain_subject` at 2 mm (seed 1), the demo model's only
training data (99 x 117 x 95 voxels, head 190 x 208 x 172 mm in R-L x A-P x S-I with the scalp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import modalities
from ..errors import OutOfDomainError
from ..io.volume import Volume

# -- thresholds (with where each number comes from) ------------------------------------------------

# Foreground: voxels above this share of the 99.5th percentile (MRI) — the phantom's background is
# Rician noise at 2 % of white matter, its darkest head tissue (bone) about 5 %, so 10 % keeps the head
# and drops the air. For CT the head is everything above -500 HU (air and lungs are below).
FG_SHARE_MRI = 0.10
FG_HU_CT = -500.0
TOP_PERCENTILE = 99.5

# Contrast signature: median of the head / its 99.5th percentile. Measured on phantom seeds 1 and 2:
# T1 0.49 / 0.54, PD 0.68 / 0.72, FLAIR 0.66 / 0.68, T2 0.30 / 0.31; nibabel's anatomical.nii (a
# real T1, cropped inside the brain) 0.69; pydicom's abdominal MR (examples_overlay.dcm) 0.33. Only
# T2-like (bright CSF, dark brain) against the others is separable with it; the bound sits between
# T2 (0.31) and T1 (0.49).
T2_LIKE_MAX = 0.42
T2_EXPECTED = ("t2",)

# Body region: the phantom's head is 208 mm long (A-P) with the scalp; adult heads are 175-210 mm
# long (anthropometric tables), so 250 mm leaves room for a large head and for neck/padding; pydicom's
# abdominal MR (examples_overlay.dcm) is 350 mm wide.
MAX_HEAD_MM = 250.0
# A head's axial section is longer than wide (phantom R-L/A-P = 190/208 = 0.91; adult cephalic index
# 0.75-0.90); a trunk is wider than deep (abdominal MR above: 1.6). 1.15 is above any head.
MAX_WIDTH_TO_DEPTH = 1.15

# Field of view: the training heads cover 172 mm S-I and 190 x 208 mm in-plane. Under 60 % of that
# (about 100 mm S-I, 115 mm in-plane) is a partial head; nibabel's anatomical.nii covers 66 x 82 x 50 mm.
TRAIN_EXTENT_MM = (190.0, 208.0, 172.0)
MIN_EXTENT_SHARE = 0.6
# A head fills 35 % of the phantom's box; a box cut inside the brain is almost all foreground
# (anatomical.nii: 99 %). Above 85 % the volume is cropped through the head.
MAX_FG_FILL = 0.85

# Resolution: slices are padded (or, when larger than the model size, padded to a square and
# downsampled) to the model's frame, so what matters is the share of the frame the head spans: the
# demo model's training slices are 2 mm voxels padded to 128 px, so the 208 mm head spans
# 208 / 256 = 0.81 of it. Beyond x or / 1.35 the anatomy is drawn at a scale the model never saw (the
# 1 mm phantom, downsampled to 128 px, spans 0.89: 1.10x, inside). Only judged on volumes that
# cover the head (a partial one has a smaller section and is flagged on its field of view).
TRAIN_HEAD_SHARE = 0.81
SCALE_TOLERANCE = 1.35
# Slice thickness: training is 2 mm isotropic; 2.5x (5 mm, routine clinical slices) is well outside.
TRAIN_SLICE_MM = 2.0
MAX_SLICE_FACTOR = 2.5

# Chest X-rays (``report``): the phantom's radiographs are square (256 px, PA and lateral); real
# chest radiographs are close to it (pydicom-data's RG1: 1955 x 1841, 1.06). 1.5 is beyond any chest
# film (14 x 17 in = 1.21); pydicom's NM whole-body image (JPEG2000.dcm) is 4.0.
MAX_XRAY_ASPECT = 1.5
# The model sees X-rays at its image size (128 px for the demo model); an image under half of that
# (pydicom's 16 x 16 CR test files) cannot show a chest's findings.
MIN_XRAY_SHARE = 0.5
# DICOM Modality values of projection radiographs (PS3.3 C.7.3.1.1.1).
XRAY_MODALITIES = ("CR", "DX", "RG", "DR", "OT")

# After sampling: mean std of K samples inside the head / the output range (CT: the 3072 HU window).
# Measured with the demo model (DDIM 25, K = 2, seed 0): phantom T1 -> CT (seed 5, subject 1) 0.0019
# (6 HU); nibabel's anatomical.nii -> CT 0.0076 (23 HU; its output has a median of -165 HU and 2 %
# of voxels above 300 HU: not a plausible CT). The bound is 3x the in-domain spread. Two cases only:
# recalibrate it when the model changes.
MAX_SPREAD = 0.006

NOT_CHECKED = "latent distance (no latent_reference.json in the model folder: `medm2g weights calibrate`)"


@dataclass
class Applicability:
    """A verdict with its score, the reasons of a warn, and the measured statistics."""

    deviations: dict[str, float] = field(default_factory=dict)
    label: str = "input"
    reasons: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    strict: bool = False  # refuse (raise) instead of warning: the post-load latent check needs to know
    not_checked: list[str] = field(default_factory=lambda: [NOT_CHECKED])

    def add(self, key: str, deviation: float, reason: str | None = None) -> None:
        """Record one check; ``reason`` is kept only when the check is outside the range (d > 1)."""
        self.deviations[key] = round(float(deviation), 4)
        if deviation > 1.0 and reason:
            self.reasons.append(reason)

    @property
    def score(self) -> float:
        """``1 / (1 + max deviation)``: 1 typical, 0.5 at a threshold, lower further out."""
        return round(1.0 / (1.0 + max(self.deviations.values(), default=0.0)), 4)

    @property
    def verdict(self) -> str:
        """``warn`` when any check is outside its range, else ``ok``."""
        return "warn" if self.reasons else "ok"

    def merge(self, other: Applicability, prefix: str = "") -> None:
        """Fold another case's checks in (e.g. one per synthesize input)."""
        for k, d in other.deviations.items():
            self.deviations[prefix + k] = d
        self.reasons += [prefix + r for r in other.reasons]
        self.stats.update({prefix + k: v for k, v in other.stats.items()})

    def as_dict(self) -> dict[str, Any]:
        """The run report entry."""
        return {"verdict": self.verdict, "score": self.score, "reasons": list(self.reasons),
                "checks": dict(self.deviations), "stats": dict(self.stats),
                "not_checked": list(self.not_checked)}


def foreground(array: np.ndarray, modality: str) -> np.ndarray:
    """The head (or body) mask used by every check: above -500 HU for CT, above 10 % of the 99.5th
    percentile for MRI (taken on every other voxel: no full-volume float copy of a big scan)."""
    a = np.asarray(array)
    if modality == "ct":
        return a > FG_HU_CT
    sub = _every_other(a).astype(np.float32)
    sub = sub[np.isfinite(sub)]
    top = float(np.percentile(sub, TOP_PERCENTILE)) if sub.size else 0.0
    return a > FG_SHARE_MRI * top


def _every_other(a: np.ndarray) -> np.ndarray:
    """A strided view (every other voxel along each axis): the statistics, not the mask, use it."""
    return a[tuple(slice(None, None, 2) for _ in range(a.ndim))]


def assess_input(vol: Volume, expected: str, *, axis: str = "axial", image_size: int = 128) -> Applicability:
    """Pre-sampling checks of one input volume given as ``expected`` (a modality or MRI contrast).

    ``axis`` and ``image_size`` give the model-pixel size (slices padded/resized to ``image_size``).
    Needs no model. ``mri`` as ``expected`` means the T1 the MRI->CT branch was trained on.
    """
    from ..io.orientation import AXES, to_canonical_array

    mod, contrast = modalities.split_target(expected)
    contrast = contrast or (expected if expected in modalities.MRI_CONTRASTS else ("t1" if mod == "mri" else None))
    arr, ornt = to_canonical_array(np.asarray(vol.array), vol.affine)  # axes R-L, A-P, S-I
    spacing = [0.0, 0.0, 0.0]
    for i, (ax, _) in enumerate(ornt):  # array axis i lies along world axis ax
        spacing[int(ax)] = vol.spacing[i]
    fg = foreground(arr, mod)
    res = Applicability()
    res.stats["spacing_mm"] = [round(s, 3) for s in spacing]
    if not fg.any():
        res.add("foreground", 2.0, "no head found (the volume is empty after removing the background)")
        return res
    extent = []
    for ax in range(3):
        idx = np.nonzero(fg.any(axis=tuple(i for i in range(3) if i != ax)))[0]
        extent.append(float((idx[-1] - idx[0] + 1) * spacing[ax]))
    fill = float(fg.mean())
    res.stats.update({"extent_mm": [round(e, 1) for e in extent], "foreground_fill": round(fill, 3)})

    # body region: size and shape of the axial section
    longest = max(extent)
    res.add("region_size", longest / MAX_HEAD_MM,
            f"body region: the foreground is {longest:.0f} mm across, larger than a head (<= {MAX_HEAD_MM:.0f} mm) "
            "— is this a brain scan?")
    ratio = extent[0] / max(extent[1], 1e-6)
    res.stats["width_to_depth"] = round(ratio, 3)
    if min(extent[0], extent[1]) > 0:
        res.add("region_shape", ratio / MAX_WIDTH_TO_DEPTH,
                f"body region: the section is {ratio:.2f}x wider than deep (a head is longer front-to-back) "
                "— is this a brain scan?")

    # field of view: partial coverage, or a box cut inside the head
    short = [(name, e, t) for name, e, t in zip(("R-L", "A-P", "S-I"), extent, TRAIN_EXTENT_MM, strict=True)
             if e < MIN_EXTENT_SHARE * t]
    cover = min(e / t for e, t in zip(extent, TRAIN_EXTENT_MM, strict=True))
    res.add("coverage", MIN_EXTENT_SHARE / max(cover, 1e-6),
            "field of view: covers only " + ", ".join(f"{e:.0f} mm {n}" for n, e, _ in short)
            + f" (trained on whole heads, {' x '.join(f'{t:.0f}' for t in TRAIN_EXTENT_MM)} mm)")
    res.add("fill", fill / MAX_FG_FILL,
            f"field of view: the head fills {fill:.0%} of the volume — it is cropped through the head")

    # resolution: mm per model pixel in the slice plane, and slice thickness
    k = AXES[axis]
    plane = [i for i in range(3) if i != k]
    frame_mm = max(spacing[i] for i in plane) * max(max(arr.shape[i] for i in plane), image_size)
    share = max(extent[i] for i in plane) / max(frame_mm, 1e-6)
    res.stats["head_frame_share"] = round(share, 3)
    scale = max(share / TRAIN_HEAD_SHARE, TRAIN_HEAD_SHARE / max(share, 1e-6))
    if res.deviations["coverage"] <= 1.0:
        res.add("frame_scale", (scale - 1) / (SCALE_TOLERANCE - 1),
                f"resolution: the head spans {share:.0%} of the model's {image_size}-pixel frame "
                f"(trained: {TRAIN_HEAD_SHARE:.0%}), so it is drawn at another scale")
    res.add("slice_thickness", spacing[k] / (TRAIN_SLICE_MM * MAX_SLICE_FACTOR),
            f"resolution: {spacing[k]:.1f} mm slices (trained on {TRAIN_SLICE_MM:.0f} mm)")

    # contrast signature (MRI)
    if mod == "mri":
        vals = _every_other(arr)[_every_other(fg)].astype(np.float32)
        bulk = float(np.median(vals) / max(float(np.percentile(vals, TOP_PERCENTILE)), 1e-6))
        res.stats["bulk_to_top"] = round(bulk, 4)
        if contrast in T2_EXPECTED:
            res.add("contrast", bulk / T2_LIKE_MAX,
                    f"contrast: the head's median is {bulk:.2f} of its brightest voxels — not T2-like "
                    f"(T2 <= {T2_LIKE_MAX}); is this a {contrast.upper()}?")
        else:
            res.add("contrast", T2_LIKE_MAX / max(bulk, 1e-6),
                    f"contrast: looks like a T2 (bright CSF: the head's median is {bulk:.2f} of its brightest "
                    f"voxels, <= {T2_LIKE_MAX}) where a {(contrast or 't1').upper()} is expected")
    return res


def assess_spread(res: Applicability, std: Volume, mask_from: Volume, modality: str, span: float) -> None:
    """Post-sampling check: mean per-voxel std of the K samples inside the input's foreground,
    relative to the output range ``span`` (HU window or MRI range)."""
    fg = foreground(np.asarray(mask_from.array), modality)
    if not fg.any():
        return
    spread = float(np.asarray(std.array, dtype=np.float32)[fg].mean()) / max(span, 1e-6)
    res.stats["sample_spread"] = round(spread, 5)
    res.add("sample_spread", spread / MAX_SPREAD,
            f"uncertainty: the samples disagree by {spread:.1%} of the output range inside the head "
            f"(above {MAX_SPREAD:.1%})")


def warning_line(label: str, res: Applicability) -> str:
    """The one ``warning:`` line of a case that is outside the domain."""
    return f"warning: {label} may be outside the model's domain (score {res.score:.2f}): " + "; ".join(res.reasons)


def refuse(label: str, res: Applicability) -> OutOfDomainError:
    """The ``--strict`` refusal of a case that is outside the domain (raised before any sampling)."""
    return OutOfDomainError(f"{label} is outside the model's domain: " + "; ".join(res.reasons),
                            "check the input (see the model card's domain), or run without --strict to get a "
                            "warned result")


def model_image_size(meta: dict[str, Any]) -> int:
    """The model's slice size in pixels, from its ``medm2g.json`` (no model loaded)."""
    return int(((meta.get("config") or {}).get("image") or {}).get("image_size", 128))


def screen(inputs: list[tuple[str, Volume]], label: str, *, axis: str, image_size: int, strict: bool,
           log: Any) -> Applicability:
    """Pre-sampling guard of one case (one or more named inputs): with ``strict`` a warn raises
    :class:`OutOfDomainError`; otherwise it prints one ``warning:`` line. Returns the record."""
    res = Applicability(label=label, strict=strict)
    for name, vol in inputs:
        res.merge(assess_input(vol, name, axis=axis, image_size=image_size),
                  prefix=f"{name}: " if len(inputs) > 1 else "")
    if res.verdict == "warn":
        if strict:
            raise refuse(label, res)
        log(warning_line(label, res))
    return res


def finish(res: Applicability, std: Volume | None, first: tuple[str, Volume], output_range: dict[str, Any],
           log: Any) -> dict[str, Any]:
    """Post-sampling guard (the K-sample spread, when K > 1); prints a ``warning:`` line if only the
    spread is out of range (a pre-sampling warn was printed already). Returns the run report entry."""
    if std is not None:
        before = list(res.reasons)
        span = float(output_range["high"]) - float(output_range["low"])
        assess_spread(res, std, first[1], modalities.split_target(first[0])[0], span)
        if res.reasons != before:
            log(f"warning: {res.label}: " + "; ".join(r for r in res.reasons if r not in before))
    return res.as_dict()


def assess_xray(vol: Volume, *, image_size: int = 128) -> Applicability:
    """Pre-sampling checks of one chest X-ray given to ``report``: DICOM Modality and
    BodyPartExamined when present, aspect ratio and size in pixels. Needs no model."""
    res = Applicability()
    arr = np.asarray(vol.array)
    shape = [int(s) for s in arr.shape if s > 1][:2] or [1, 1]
    tag = str(vol.meta.get("Modality") or "").upper()
    if tag:
        res.stats["dicom_modality"] = tag
        res.add("modality", 0.0 if tag in XRAY_MODALITIES else 2.0,
                f"modality: its DICOM Modality is {tag}, not a radiograph")
    part = str(vol.meta.get("BodyPartExamined") or "").upper()
    if part:
        res.stats["body_part"] = part
        res.add("region", 0.0 if "CHEST" in part or "THORAX" in part else 2.0,
                f"body region: BodyPartExamined is {part}, not CHEST")
    aspect = max(shape) / max(min(shape), 1)
    res.stats["aspect"] = round(aspect, 3)
    res.add("aspect", aspect / MAX_XRAY_ASPECT,
            f"field of view: the image is {aspect:.1f}:1 (chest radiographs are about square)")
    side = min(shape) / image_size
    res.stats["short_side_px"] = min(shape)
    res.add("size", MIN_XRAY_SHARE / max(side, 1e-6),
            f"resolution: {min(shape)} px on its short side (the model works at {image_size})")
    return res


def guard_xray(vol: Volume, label: str, *, image_size: int, strict: bool, log: Any) -> dict[str, Any]:
    """Pre-sampling guard of one X-ray (``report``): warn line, or refusal with ``strict``."""
    res = assess_xray(vol, image_size=image_size)
    res.label = label
    if res.verdict == "warn":
        if strict:
            raise refuse(label, res)
        log(warning_line(label, res))
    return res.as_dict()
