"""How prediction/reference image pairs become scored slices: reading, matching, normalisation,
masks, slice selection and aggregation.

Two protocols (state the one used next to every number; mixing them makes numbers incomparable):

``default`` (the toolkit's recommendation, datasets-metrics.md section 2.3)
    Per volume: MRI/X-ray — clip negatives and divide by the volume's own maximum; CT — clip to a
    fixed HU range and map it linearly to [0, 1]. Per evaluated slice: PSNR and Gaussian SSIM with
    ``data_range=1`` (background included). Per subject: the mean over its slices. Reported:
    mean ± std (ddof=0) across subjects, SSIM in %. CT additionally gets MAE in HU inside the body
    mask, on the HU-clipped volumes.

``syndiff`` (reproduces SynDiff's ``test.py``)
    Per slice: divide the prediction and the reference *each by its own slice maximum*, zero-pad /
    center-crop to 256x152 (torchvision ``CenterCrop``), ``PSNR = 20 log10(max(pred_crop) / RMSE)``.
    The script's number is the ``nanmean`` over all slices; the per-subject mean ± std is reported
    next to it. SynDiff's repository computes no SSIM: the SSIM given under this protocol is the
    toolkit's Gaussian SSIM on the same cropped slices (``data_range=1``) and is labelled so.

Masks (``brain|body|none``) are computed from the *reference*: they choose the evaluated slices
(those with mask voxels) and, for CT, the MAE region. PSNR/SSIM are never computed inside a mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FormatError, InputError
from ..io.formats import VOLUME_FORMATS, VOLUME_SUFFIXES, suffix_of
from .image import mae_slices, mean_std, psnr_slices, ssim_slices

PROTOCOLS = ("default", "syndiff")
MASKS = ("brain", "body", "none")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CT_HU_RANGE: tuple[float, float] = (-1024.0, 3071.0)
"""Fixed HU range both CT volumes are clipped to before MAE and before the [0, 1] mapping
(the 12-bit CT range; recorded in every results file)."""
BODY_THRESHOLD_HU = -500.0
"""CT body mask: reference voxels above this HU (then holes filled, largest component)."""
RELATIVE_MASK_THRESHOLD = {"brain": 0.1, "body": 0.05}
"""MRI/X-ray masks: reference voxels above this fraction of the reference maximum."""
SYNDIFF_CROP: tuple[int, int] = (256, 152)


@dataclass
class ImageCase:
    """One subject (a volume) or one picture; ``array`` is (n_slices, H, W), axial slices first."""

    name: str
    array: np.ndarray
    path: Path


@dataclass
class CaseResult:
    """Per-subject scores (slice means) and the per-slice values they came from."""

    name: str
    n_slices: int
    psnr: float
    ssim: float  # in [0, 1]; tables show %
    mae_hu: float | None = None
    psnr_slices: list[float] = field(default_factory=list)


@dataclass
class ImageEvaluation:
    """Everything ``evaluate images`` reports."""

    protocol: str
    modality: str
    mask: str
    cases: list[CaseResult]
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Mean ± std across subjects (SSIM in %), counts, and the protocol's settings."""
        psnr = mean_std([c.psnr for c in self.cases])
        ssim = mean_std([c.ssim * 100.0 for c in self.cases])
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "modality": self.modality,
            "mask": self.mask,
            "n_subjects": len(self.cases),
            "n_slices": int(sum(c.n_slices for c in self.cases)),
            "metrics": {
                "psnr": {"mean": psnr[0], "std": psnr[1], "unit": "dB"},
                "ssim": {"mean": ssim[0], "std": ssim[1], "unit": "%"},
            },
            "aggregation": "per-subject mean over slices, then mean ± std (ddof=0) across subjects",
            "settings": self.settings,
        }
        if self.modality == "ct":
            mae = mean_std([c.mae_hu for c in self.cases if c.mae_hu is not None])
            out["metrics"]["mae"] = {"mean": mae[0], "std": mae[1], "unit": "HU"}
        if self.protocol == "syndiff":
            allv = np.concatenate([np.asarray(c.psnr_slices, dtype=float) for c in self.cases]) if self.cases else np.array([])
            with np.errstate(all="ignore"):
                finite = allv[~np.isnan(allv)]
            out["metrics"]["psnr_nanmean_slices"] = {
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "unit": "dB",
                "note": "SynDiff test.py's printed number: nanmean over all slices of all subjects",
            }
        return out


# ----------------------------------------------------------------------------------------- reading


def _key(path: Path) -> str:
    name = path.name
    for suf in VOLUME_SUFFIXES + PICTURE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _supported(path: Path) -> bool:
    low = path.name.lower()
    return low.endswith(VOLUME_SUFFIXES + PICTURE_SUFFIXES) and not path.name.startswith(".")


def list_cases(path: Path) -> dict[str, Path]:
    """The evaluable files of a file or folder, keyed by name without extension."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"'{p}' does not exist", "check the path")
    if p.is_file():
        if not _supported(p):
            raise FormatError(f"'{p.name}' is not a supported image or volume",
                              f"use one of {', '.join(VOLUME_SUFFIXES + PICTURE_SUFFIXES)}")
        return {_key(p): p}
    files = sorted(f for f in p.iterdir() if f.is_file() and _supported(f))
    if not files:
        raise InputError(f"'{p}' holds no images or volumes",
                         f"expected {', '.join(VOLUME_SUFFIXES + PICTURE_SUFFIXES)} files")
    out: dict[str, Path] = {}
    for f in files:
        k = _key(f)
        if k in out:
            raise InputError(f"'{p}' holds two files named '{k}' ({out[k].name}, {f.name})", "keep one of them")
        out[k] = f
    return out


def read_slices(path: Path) -> np.ndarray:
    """Read a volume as axial slices ``(n, H, W)`` float64, or a picture as ``(1, H, W)``.

    NIfTI volumes are brought to the closest canonical (RAS) orientation first, so axis 2 is the
    inferior-superior axis whichever way the file was stored; MetaImage/NRRD go through SimpleITK
    (array order z, y, x: already axial-first). Colour pictures are converted to grey (PIL "L").
    """
    fmt = VOLUME_FORMATS.get(suffix_of(path))
    try:
        if fmt == "nifti":
            import nibabel as nib

            from ..io.nifti import check_nifti_size

            loaded = nib.load(str(path))
            check_nifti_size(path, loaded)  # a hostile header must not make us allocate terabytes
            img = nib.as_closest_canonical(loaded)
            a = np.asarray(img.dataobj, dtype=np.float64)
            if a.ndim == 4 and a.shape[3] == 1:
                a = a[..., 0]
            if a.ndim == 2:
                return a[None]
            if a.ndim != 3:
                raise FormatError(f"'{path.name}' has {a.ndim} dimensions", "evaluate 2-D or 3-D images")
            return np.moveaxis(a, 2, 0)
        if fmt in ("mha", "nrrd"):
            from ..io.itk import read_itk  # data file and size checked before ITK allocates

            return np.asarray(read_itk(path).array, dtype=np.float64).transpose(2, 1, 0)  # (z, y, x), as ITK stores it
        from ..io.png import open_picture

        with open_picture(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
            else:
                a = np.asarray(im.convert("L"), dtype=np.float64)
        return a[None]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read '{path}': {exc}", "check that the file is a valid image") from exc


def match_cases(pred: Path, ref: Path) -> list[tuple[str, Path, Path]]:
    """Pair prediction and reference files by name; any difference stops with one line listing it."""
    p, r = list_cases(pred), list_cases(ref)
    if Path(pred).is_file() and Path(ref).is_file():
        return [(next(iter(r)), p[next(iter(p))], r[next(iter(r))])]
    only_p, only_r = sorted(set(p) - set(r)), sorted(set(r) - set(p))
    if only_p or only_r:
        parts = [f"{len(p)} predictions vs {len(r)} references"]
        if only_p:
            parts.append(f"only in predictions: {_short(only_p)}")
        if only_r:
            parts.append(f"only in references: {_short(only_r)}")
        raise InputError("prediction and reference sets do not match (" + "; ".join(parts) + ")",
                         "give folders holding the same case names")
    return [(k, p[k], r[k]) for k in sorted(r)]


def _short(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


# --------------------------------------------------------------------------------------- protocol


def _largest_component_filled(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    filled = np.stack([ndimage.binary_fill_holes(s) for s in mask]) if mask.any() else mask
    lab, n = ndimage.label(filled)
    if n <= 1:
        return filled.astype(bool)
    sizes = ndimage.sum_labels(filled, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def reference_mask(ref: np.ndarray, kind: str, modality: str) -> np.ndarray | None:
    """The brain/body mask of a reference stack (None for ``none``); see the module docstring."""
    if kind == "none":
        return None
    if modality == "ct":
        raw = ref > BODY_THRESHOLD_HU
    else:
        peak = float(np.clip(ref, 0, None).max())
        raw = ref > RELATIVE_MASK_THRESHOLD[kind] * peak if peak > 0 else np.zeros(ref.shape, bool)
    return _largest_component_filled(raw)


def normalise_default(stack: np.ndarray, modality: str, hu_range: tuple[float, float]) -> np.ndarray:
    """Default protocol intensity normalisation of one volume (see module docstring)."""
    if modality == "ct":
        lo, hi = hu_range
        return (np.clip(stack, lo, hi) - lo) / (hi - lo)
    a = np.clip(stack, 0.0, None)
    peak = float(a.max())
    return a / peak if peak > 0 else a


def center_crop(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision ``CenterCrop`` on the last two axes: zero-pad when smaller, then crop at
    ``int(round((h - ch) / 2))`` / ``int(round((w - cw) / 2))``."""
    ch, cw = size
    h, w = a.shape[-2:]
    if ch > h or cw > w:
        pt, pl = ((ch - h) // 2 if ch > h else 0), ((cw - w) // 2 if cw > w else 0)
        pb, pr = ((ch - h + 1) // 2 if ch > h else 0), ((cw - w + 1) // 2 if cw > w else 0)
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(pt, pb), (pl, pr)])
        h, w = a.shape[-2:]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return a[..., top : top + ch, left : left + cw]


def syndiff_psnr_slices(pred: np.ndarray, ref: np.ndarray, crop: tuple[int, int] = SYNDIFF_CROP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SynDiff ``test.py`` per slice: each slice over its own max, center crop, then
    ``20 log10(max(pred_crop) / RMSE)``. Returns (psnr, cropped pred, cropped ref)."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / p.max(axis=(1, 2), keepdims=True)
        r = r / r.max(axis=(1, 2), keepdims=True)
        p, r = center_crop(p, crop), center_crop(r, crop)
        rmse = np.sqrt(((p - r) ** 2).mean(axis=(1, 2)))
        return 20.0 * np.log10(p.max(axis=(1, 2)) / rmse), p, r


def evaluate_pair(name: str, pred: np.ndarray, ref: np.ndarray, *, protocol: str = "default", modality: str = "mri",
                  mask: str = "none", hu_range: tuple[float, float] = CT_HU_RANGE,
                  crop: tuple[int, int] = SYNDIFF_CROP) -> CaseResult:
    """Score one subject: ``pred``/``ref`` are (n, H, W) stacks in the files' intensity units."""
    if pred.shape != ref.shape:
        raise InputError(f"'{name}': prediction shape {pred.shape} differs from reference {ref.shape}",
                         "resample the prediction onto the reference grid")
    m = reference_mask(ref, mask, modality)
    keep = np.ones(ref.shape[0], bool) if m is None else m.any(axis=(1, 2))
    if not keep.any():
        raise InputError(f"'{name}': the {mask} mask is empty in every slice", "use --mask none or check the reference")
    p, r = pred[keep], ref[keep]
    mae = None
    if modality == "ct":
        lo, hi = hu_range
        mae = float(np.nanmean(mae_slices(np.clip(p, lo, hi), np.clip(r, lo, hi), None if m is None else m[keep])))
    if protocol == "default":
        pn, rn = normalise_default(p, modality, hu_range), normalise_default(r, modality, hu_range)
        ps = psnr_slices(pn, rn, 1.0)
        ss = ssim_slices(pn, rn, 1.0)
    elif protocol == "syndiff":
        ps, pc, rc = syndiff_psnr_slices(p, r, crop)
        ss = ssim_slices(np.nan_to_num(pc), np.nan_to_num(rc), 1.0)
    else:
        raise ConfigError(f"unknown protocol '{protocol}'", f"use one of: {', '.join(PROTOCOLS)}")
    with np.errstate(invalid="ignore"):
        psnr_mean = float(np.nanmean(ps)) if protocol == "syndiff" else mean_std(ps)[0]
    return CaseResult(name=name, n_slices=int(keep.sum()), psnr=psnr_mean, ssim=float(np.mean(ss)), mae_hu=mae,
                      psnr_slices=[float(x) for x in ps])


def evaluate_images(pred: Path, ref: Path, *, protocol: str = "default", modality: str = "mri", mask: str = "none",
                    hu_range: tuple[float, float] = CT_HU_RANGE, crop: tuple[int, int] = SYNDIFF_CROP) -> ImageEvaluation:
    """Score files or folders of predictions against references (matched by name).

    Every pair is read and checked before any scoring, so a mismatch in names, counts or shapes
    stops with one line listing all of them.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'", f"use one of: {', '.join(PROTOCOLS)}")
    if mask not in MASKS:
        raise ConfigError(f"unknown mask '{mask}'", f"use one of: {', '.join(MASKS)}")
    if modality not in ("ct", "mri", "xray"):
        raise ConfigError(f"unknown image modality '{modality}'", "use ct, mri or xray")
    pairs = match_cases(pred, ref)
    loaded: list[tuple[str, np.ndarray, np.ndarray]] = []
    bad: list[str] = []
    for name, pp, rp in pairs:
        a, b = read_slices(pp), read_slices(rp)
        if a.shape != b.shape:
            bad.append(f"{name}: {_shape(a)} vs {_shape(b)}")
        loaded.append((name, a, b))
    if bad:
        raise InputError(f"prediction and reference shapes differ for {len(bad)} case(s): {_short(bad, 5)}",
                         "resample predictions onto the reference grids")
    cases = [evaluate_pair(n, a, b, protocol=protocol, modality=modality, mask=mask, hu_range=hu_range, crop=crop)
             for n, a, b in loaded]
    return ImageEvaluation(protocol=protocol, modality=modality, mask=mask, cases=cases,
                           settings=protocol_settings(protocol, modality, mask, hu_range, crop))


def protocol_settings(protocol: str, modality: str, mask: str, hu_range: tuple[float, float] = CT_HU_RANGE,
                      crop: tuple[int, int] = SYNDIFF_CROP) -> dict[str, Any]:
    """The settings recorded next to every number of a protocol (summary.json and results.md)."""
    settings: dict[str, Any] = {"data_range": 1.0, "ssim": "gaussian sigma 1.5, K1 0.01, K2 0.03, population covariance"}
    if protocol == "default":
        settings["normalisation"] = (f"clip to HU {list(hu_range)}, map to [0, 1]" if modality == "ct"
                                     else "negatives clipped, divided by the volume maximum")
    else:
        settings.update({"normalisation": "each slice divided by its own maximum (prediction and reference separately)",
                         "crop": list(crop), "psnr": "20 log10(max(pred) / RMSE) per slice",
                         "ssim_note": "not computed by SynDiff's test.py; toolkit SSIM on the same cropped slices"})
    if modality == "ct":
        settings["hu_range"] = list(hu_range)
        settings["mae"] = (f"|pred - ref| in HU, both clipped to {list(hu_range)}, "
                           + (f"inside the {mask} mask" if mask != "none" else "over the whole image"))
    if mask != "none":
        settings["mask_rule"] = (f"from the reference: HU > {BODY_THRESHOLD_HU}" if modality == "ct"
                            else f"from the reference: > {RELATIVE_MASK_THRESHOLD[mask]} x its maximum") + \
            ", holes filled per slice, largest component; selects the evaluated slices"
    return settings


def _shape(a: np.ndarray) -> str:
    return "x".join(str(s) for s in a.shape)
