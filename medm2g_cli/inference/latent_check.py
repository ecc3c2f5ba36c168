"""Latent distance check of the applicability guard: are the encoded input slices like the training ones?

The model folder may hold ``latent_reference.json`` (written by ``medm2g weights calibrate`` from
the prepared training data): for each image key (an MRI contrast, ``ct``, ``xray``) a Gaussian
model of a per-slice summary of the autoencoder's latents, and the distribution of the per-slice
distance on the training slices themselves.

* Summary of one slice (``D = 9 C`` numbers for ``C`` latent channels): per channel its mean,
  standard deviation, 5/25/50/75/95th percentiles and its mean absolute difference between
  neighbours along each axis (texture). It ignores where in the frame the anatomy lies: measured on
  the demo model, a summary with a pooled spatial grid was dominated by the slice position and let a
  T2 pass as a T1, this one separates them (see the model card).
* Gaussian model: probabilistic PCA (Tipping & Bishop 1999) — the mean, the ``COMPONENTS`` leading
  principal axes with their variances, and one variance ``sigma2`` for the rest — so the file stays
  small while the distance still sees every direction.
* Distance of a slice: ``sqrt(m2 / D)`` with ``m2`` its Mahalanobis distance under that model
  (about 1 for a typical training slice).

At inference the guard encodes at most ``MAX_SLICES`` evenly spaced non-background slices of each
input exactly as translation prepares them (normalisation, padding to the model size; posterior
mean, no noise drawn) after the model is loaded and before any sampling, and compares the median
distance with the training slices' ``THRESHOLD_PERCENTILE``-th percentile: the deviation is their
ratio (``> 1``: warn). Without the file, the check is listed in ``not_checked``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import modalities
from ..errors import ConfigError, DataError, WeightsError
from .applicability import Applicability, refuse, warning_line

REFERENCE_FILE = "latent_reference.json"
FORMAT_VERSION = 1
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
COMPONENTS = 12
# The warn threshold: this percentile of the training slices' own distances. A typical input's
# median slice sits near the training median, so only inputs most of whose slices are stranger
# than 99 % of the training slices warn.
THRESHOLD_PERCENTILE = 99.0
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
# Slices encoded per input at inference: the median of 24 is stable and the encoder pass costs a
# fraction of one sampling step of the whole volume.
MAX_SLICES = 24
# Slices per key at calibration (evenly spaced over the prepared records): bounds the encoding cost.
CALIBRATION_SLICES = 1500
ROUND = 6  # significant digits kept in the JSON


def reference_key(name: str) -> str:
    """The reference entry of an input named ``name``: its contrast, ``t1`` for a bare ``mri`` (the
    MRI->CT branch's training input), else its modality."""
    mod, contrast = modalities.split_target(name)
    return (contrast or "t1") if mod == "mri" else mod


# -- per-slice summary and its Gaussian model -------------------------------------------------------


def slice_features(z: Any) -> np.ndarray:
    """Latents [B, C, h, w] (tensor) -> summaries [B, 9 C] (float64): per channel the mean, std,
    5/25/50/75/95th percentiles and the mean absolute difference of neighbours along each axis."""
    import torch

    z = z.detach().float().cpu()
    flat = z.flatten(2)
    q = torch.quantile(flat, torch.tensor(QUANTILES), dim=2).permute(1, 2, 0).flatten(1)
    gy = (z[..., 1:, :] - z[..., :-1, :]).abs().flatten(2).mean(2)
    gx = (z[..., 1:] - z[..., :-1]).abs().flatten(2).mean(2)
    return torch.cat([flat.mean(2), flat.std(2), q, gy, gx], 1).double().numpy()


def fit(features: np.ndarray, components: int = COMPONENTS) -> dict[str, Any]:
    """Probabilistic-PCA model of ``features`` [N, D] and the percentiles of its own slices' distances."""
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False).reshape(d, d)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    k = max(1, min(components, d - 1, n - 1))
    floor = max(float(vals.sum()), 1e-12) * 1e-6  # a flat direction must not give an infinite distance
    rest = vals[k:]
    sigma2 = max(float(rest.mean()) if rest.size else floor, floor)
    comp = vecs[:, :k].T
    comp *= np.where(comp[np.arange(k), np.abs(comp).argmax(1)] < 0, -1.0, 1.0)[:, None]  # a fixed sign
    model = {"mean": _round(mean), "components": [_round(c) for c in comp],
             "variances": _round(np.maximum(vals[:k], floor)), "sigma2": _round(np.array([sigma2]))[0]}
    scores = distances(x, model)
    model.update({"slices": int(n), "dim": int(d),
                  "percentiles": {f"{p:g}": _round(np.array([np.percentile(scores, p)]))[0] for p in PERCENTILES}})
    return model


def distances(features: np.ndarray, model: dict[str, Any]) -> np.ndarray:
    """Per-slice distance ``sqrt(m2 / D)`` of ``features`` [N, D] under a :func:`fit` model."""
    x = np.asarray(features, dtype=np.float64) - np.asarray(model["mean"])
    comp = np.asarray(model["components"], dtype=np.float64)
    var = np.asarray(model["variances"], dtype=np.float64)
    proj = x @ comp.T
    resid = (x * x).sum(1) - (proj * proj).sum(1)
    m2 = (proj * proj / var).sum(1) + np.maximum(resid, 0.0) / float(model["sigma2"])
    return np.sqrt(m2 / x.shape[1])


def _round(a: np.ndarray) -> list[float]:
    return [float(f"{v:.{ROUND}g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def threshold(model: dict[str, Any]) -> float:
    """The warn threshold: the training slices' ``THRESHOLD_PERCENTILE``-th percentile distance."""
    return float(model["percentiles"][f"{THRESHOLD_PERCENTILE:g}"])


# -- encoding ------------------------------------------------------------------------------------------


def encode_features(model: Any, modality: str, x: Any, batch_size: int = 16) -> np.ndarray:
    """Summaries [B, D] of images ``x`` [B, 1, S, S] in [-1, 1] (posterior mean latents, fp32)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            out.append(slice_features(model.encode_image(modality, x[i:i + batch_size])))
    return np.concatenate(out, 0) if out else np.zeros((0, 0))


def volume_features(model: Any, vol: Any, name: str, *, axis: str = "axial",
                    max_slices: int = MAX_SLICES) -> tuple[np.ndarray, int]:
    """Summaries of at most ``max_slices`` evenly spaced non-background slices of ``vol`` given as
    ``name``, prepared as :func:`~medm2g_cli.inference.pipeline.translate_sources` prepares them;
    returns them and the number of non-background slices."""
    from ..data.transforms import SliceGeometry, normalisation_for
    from ..io.orientation import AXES, to_canonical_array
    from .background import background_slices

    arr = np.asarray(vol.array)
    preset = modalities.get(name).preset
    norm = normalisation_for(arr if preset is None or preset.mode == "window" else arr.astype(np.float32), name)
    stack = np.moveaxis(to_canonical_array(arr, vol.affine)[0], AXES[axis], 0)
    keep = np.flatnonzero(~background_slices([stack], [norm]))
    if keep.size == 0:
        return np.zeros((0, 0)), 0
    pick = keep[np.unique(np.linspace(0, keep.size - 1, min(max_slices, keep.size)).round().astype(int))]
    geom = SliceGeometry(stack.shape[1], stack.shape[2], model.image_size)
    x = geom.to_model(norm.forward(np.asarray(stack[pick])))
    return encode_features(model, modalities.split_target(name)[0], x), int(keep.size)


# -- the guard -----------------------------------------------------------------------------------------


def load_reference(weights: Path) -> dict[str, Any] | None:
    """``latent_reference.json`` of a model folder, or None when it has none."""
    path = Path(weights) / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        ref = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"'{path}' is not valid JSON", "recompute it with `medm2g weights calibrate --overwrite`") from exc
    if not isinstance(ref, dict) or ref.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"'{path}' is not a format-{FORMAT_VERSION} latent reference",
                           "recompute it with `medm2g weights calibrate --overwrite`")
    return ref


def assess_latents(res: Applicability, model: Any, reference: dict[str, Any], inputs: Sequence[tuple[str, Any]], *,
                   axis: str = "axial") -> None:
    """Add the ``latent_distance`` check of each input to the :class:`~.applicability.Applicability` ``res``."""
    t = time.perf_counter()
    missing = []
    for name, vol in inputs:
        key = reference_key(name)
        prefix = f"{name}: " if len(inputs) > 1 else ""
        entry = (reference.get("keys") or {}).get(key)
        if entry is None:
            missing.append(f"{prefix}latent distance (the reference has no '{key}' slices)")
            continue
        feats, n_fg = volume_features(model, vol, name, axis=axis)
        if feats.shape[0] == 0:
            continue  # an empty volume: the input checks already warn ("no head found")
        med = float(np.median(distances(feats, entry)))
        thr = threshold(entry)
        res.stats[prefix + "latent_distance"] = round(med, 4)
        res.stats[prefix + "latent_threshold"] = round(thr, 4)
        res.stats[prefix + "latent_slices"] = int(feats.shape[0])
        res.add(prefix + "latent_distance", med / max(thr, 1e-9),
                f"{prefix}latents: the encoded slices lie {med:.2f} from the training {key.upper()} slices "
                f"(median; {THRESHOLD_PERCENTILE:g} % of training slices are within {thr:.2f})")
    res.not_checked = missing
    res.stats["latent_check_s"] = round(time.perf_counter() - t, 4)


def screen_latents(res: Applicability, model: Any, weights: Path, inputs: Sequence[tuple[str, Any]], *, axis: str,
                   log: Callable[[str], None]) -> None:
    """Post-load, pre-sampling guard: the latent check of ``inputs`` folded into ``res``; a new
    reason prints one ``warning:`` line, or with ``res.strict`` raises the refusal before sampling.
    Does nothing (the check stays in ``not_checked``) when the model folder has no reference."""
    reference = load_reference(weights)
    if reference is None:
        return
    if reference.get("weights_sha256") != weights_fingerprint(weights):
        res.not_checked = ["latent distance (latent_reference.json was computed for other weights; "
                           "recompute it with `medm2g weights calibrate --overwrite`)"]
        return
    before = list(res.reasons)
    assess_latents(res, model, reference, inputs, axis=axis)
    new = [r for r in res.reasons if r not in before]
    if new and res.strict:
        raise refuse(res.label, res)
    if new:  # one line; a second one only when the input checks warned already
        log(f"warning: {res.label}: " + "; ".join(new) if before else warning_line(res.label, res))


# -- calibration (``medm2g weights calibrate``) --------------------------------------------------------


def _image_keys(available: set[str], model_modalities: Sequence[str]) -> list[str]:
    keys = [c for c in modalities.MRI_CONTRASTS if c in available and "mri" in model_modalities]
    return keys + [m for m in ("ct", "xray") if m in available and m in model_modalities]


def calibrate(weights: Path, data: Sequence[Path], *, overwrite: bool = False, device: str = "cpu",
              max_slices: int = CALIBRATION_SLICES, batch_size: int = 16,
              log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Compute the latent reference of the model folder ``weights`` from the ``train`` split of the
    prepared folders ``data``, write it atomically as ``weights/latent_reference.json`` and record
    its sha256 in ``medm2g.json``. Returns a summary (path, keys, slices, seconds)."""
    import torch

    from ..engine.io import add_file_hash, read_meta
    from ..io.atomic import atomic_path, check_output
    from ..training.datasets import TrainingData, load_image

    weights = Path(weights)
    meta = read_meta(weights)
    out = weights / REFERENCE_FILE
    if max_slices < 3:
        raise ConfigError(f"--max-slices {max_slices} is too small", f"use at least 3 (default {CALIBRATION_SLICES})")
    check_output(out, overwrite)
    t0 = time.perf_counter()
    train = TrainingData(list(data), split="train")
    keys = _image_keys(train.available(), meta.get("modalities", []))
    if not keys:
        raise DataError(f"the train split of {', '.join(str(d) for d in data)} has no image the model encodes "
                        f"(it has: {', '.join(sorted(train.available())) or 'nothing'})",
                        "pass prepared folders with MRI, CT or X-ray slices (medm2g prepare)")
    from .runtime import load_model, select_device

    torch.manual_seed(0)
    model = load_model(weights, select_device(device), verify=True)
    size = model.image_size
    entries: dict[str, Any] = {}
    for key in keys:
        recs = train.with_keys(key)
        pick = np.unique(np.linspace(0, len(recs) - 1, min(max_slices, len(recs))).round().astype(int))
        feats = []
        for i in range(0, pick.size, batch_size):
            x = torch.stack([load_image(recs[j], key, size) for j in pick[i:i + batch_size]])
            feats.append(encode_features(model, modalities.get(key).name, x, batch_size))
        if pick.size < 3:
            raise DataError(f"only {pick.size} training slice(s) of {key}", "pass more prepared data")
        entries[key] = fit(np.concatenate(feats, 0))
        log(f"{key}: {pick.size} slices, distance p50 {entries[key]['percentiles']['50']:.2f}, "
            f"p{THRESHOLD_PERCENTILE:g} {threshold(entries[key]):.2f}")
    ref = {"format_version": FORMAT_VERSION, "summary": {"quantiles": list(QUANTILES), "components": COMPONENTS,
                                                       "features": "per channel: mean, std, quantiles, mean |grad| y, x"},
           "threshold_percentile": THRESHOLD_PERCENTILE,
           "data": [d.name for d in map(Path, data)], "weights_sha256": weights_fingerprint(weights), "keys": entries}
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(ref, indent=1) + "\n")
    add_file_hash(weights, REFERENCE_FILE)
    return {"path": str(out), "keys": {k: v["slices"] for k, v in entries.items()},
            "thresholds": {k: threshold(v) for k, v in entries.items()},
            "seconds": round(time.perf_counter() - t0, 2)}


def weights_fingerprint(weights: Path) -> str:
    """sha256 over the sha256 table of ``medm2g.json`` without the reference itself: identifies the
    weights a reference was computed for (``medm2g.json`` as a whole changes when the reference is
    recorded in it)."""
    import hashlib

    from ..engine.io import read_meta

    recorded = read_meta(weights).get("sha256", {})
    h = hashlib.sha256()
    for k in sorted(recorded):
        if k != REFERENCE_FILE:
            h.update(f"{k} {recorded[k]}\n".encode())
    return h.hexdigest()
