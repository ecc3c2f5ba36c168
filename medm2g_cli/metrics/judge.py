"""An independent chest X-ray finding classifier (the "judge") for text -> X-ray retrieval and joint coherence.

Judging generated X-rays with the MedM2G model's own X-ray encoder lets the model grade itself. The judge
is trained ONLY on real phantom radiographs (:func:`medm2g_cli.data.phantom.generate_chest`, never on
generated images) and shares no weights or code with the model: a classical, deterministic pipeline.

Model (chosen by measured accuracy on held-out phantoms; a small CNN at 64 px was as good on the large
findings but missed every nodule and took minutes on a loaded 2-core machine):

- every image (any size, uint8 or float in [0, 1]) is resized to 128 px and histogram-equalised (rank
  transform: invariant to any monotonic intensity mapping, so a generator's window or gamma does not
  move the verdict), then standardised;
- features: the equalised image at 32 px (heart size, effusion meniscus, collapsed lung, airspace
  opacity), and a Hessian blob detector (bright round spots: both eigenvalues negative; rib bands are
  ridges, one eigenvalue near zero) at two scales, max-pooled on a 16 x 16 grid (nodules);
- one L2-regularised logistic regression per finding, fitted by L-BFGS in float64 on one thread.

Measured (:func:`train_judge`, 600 real images + as many augmented, ~40 s on a loaded 2-core machine):
on 120 held-out balanced phantom views the six-way accuracy is 0.90 (normal and the four large findings
1.0, nodule 0.4: the phantom's nodules are faint), present/absent 0.99-1.0 per large finding, 0.85-0.9
for nodule. Caveat: on the demo model's X-ray autoencoder round trip of the same real phantoms the
six-way accuracy falls to 0.24-0.29 (it reads the smooth, high-contrast lungs as pneumothorax), so
retrieval of generated images is bounded by that "autoencoder ceiling"; report it beside retrieval.

Multi-label: a phantom study has 0-2 findings (30 % normal), so the judge predicts one probability per
finding in :data:`CHEST_FINDINGS` and "none" is the absence of all. For retrieval, where each prompt asks
for exactly one class, :meth:`Judge.classify` picks the most probable of the six exclusive states (normal,
or exactly one finding) under those probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.phantom import CHEST_FINDINGS, findings_from_report, generate_chest

JUDGE_CLASSES: tuple[str, ...] = ("none", *CHEST_FINDINGS)
WORK_SIZE = 128  # the demo model's X-ray size; phantoms (256 px) are downsampled to it
JUDGE_SEED = 181818  # judge training studies: seeds disjoint from the demo's (1000 for training, 424242 held out)
_BLOB_SCALES = (1.2, 2.0)  # Gaussian sigma in px at 128 px: nodules of 1-2.5 cm are 1.6-4 px in radius
_GRID = 16
_PRE_BLUR = 1.0  # px at 128 px


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
                      .resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _as_unit(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = a[..., :3].mean(axis=-1) if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f"the judge needs 2-D greyscale images of at least 16 px (got shape {a.shape})")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError("image has non-finite pixels")
    return a  # any other float scale: the rank transform below makes the scale irrelevant


def _equalise(a: np.ndarray) -> np.ndarray:
    """Rank transform to [0, 1]; equal values share their mean rank (a saturated region stays flat)."""
    s = np.sort(a.ravel())
    r = (np.searchsorted(s, a, "left") + np.searchsorted(s, a, "right")) / (2.0 * a.size)
    return r.astype(np.float32)


def preprocess(img: np.ndarray) -> np.ndarray:
    """One image -> the judge's 128 px working image: resized, smoothed (ribs and photon noise, which a
    latent autoencoder does not reproduce, are removed), histogram-equalised, standardised."""
    from scipy import ndimage as ndi

    a = _equalise(ndi.gaussian_filter(_resize(_as_unit(img), WORK_SIZE), _PRE_BLUR))
    return (a - a.mean()) / (a.std() + 1e-6)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real radiograph re-rendered: a random monotone display mapping (window with saturation, gamma)
    and extra blur, the ways an autoencoder's output differs from its input. Returns float in [0, 1]."""
    from scipy import ndimage as ndi

    a = _as_unit(img)
    lo, hi = rng.uniform(0.0, 0.25), rng.uniform(0.55, 1.0)
    a = np.clip((a - lo) / (hi - lo), 0.0, 1.0) ** rng.uniform(0.5, 2.0)
    return ndi.gaussian_filter(a, rng.uniform(0.0, 3.0) * a.shape[0] / WORK_SIZE).astype(np.float32)


def _blob(a: np.ndarray, sigma: float) -> np.ndarray:
    """Bright-blob strength: minus the larger Hessian eigenvalue (scale-normalised), clipped at 0."""
    from scipy import ndimage as ndi

    g = ndi.gaussian_filter(a, sigma)
    hxx = ndi.sobel(ndi.sobel(g, 1), 1) / 16.0
    hyy = ndi.sobel(ndi.sobel(g, 0), 0) / 16.0
    hxy = ndi.sobel(ndi.sobel(g, 0), 1) / 16.0
    lmax = (hxx + hyy) / 2 + np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    return np.maximum(-lmax, 0.0) * sigma * sigma


def features(images: Sequence[np.ndarray]) -> np.ndarray:
    """Feature matrix (N x D, float32) of the judge for ``images`` (2-D arrays, any size)."""
    rows = []
    k = WORK_SIZE // _GRID
    for img in images:
        a = preprocess(img)
        parts = [_resize(a, 32).ravel()]
        for s in _BLOB_SCALES:
            parts.append(_blob(a, s).reshape(_GRID, k, _GRID, k).max(axis=(1, 3)).ravel())
        rows.append(np.concatenate(parts))
    if not rows:
        raise ValueError("no images given")
    return np.stack(rows).astype(np.float32)


def label_matrix(labels: Sequence[Collection[str]]) -> np.ndarray:
    """Finding-name sets (``"none"`` or empty = normal) -> N x 5 0/1 matrix in :data:`CHEST_FINDINGS` order."""
    out = np.zeros((len(labels), len(CHEST_FINDINGS)), np.float64)
    for i, names in enumerate(labels):
        for n in names:
            if n == "none":
                continue
            if n not in CHEST_FINDINGS:
                raise ValueError(f"unknown finding {n!r}; choose from {', '.join(JUDGE_CLASSES)}")
            out[i, CHEST_FINDINGS.index(n)] = 1.0
    return out


def _label_set(row: np.ndarray) -> frozenset[str]:
    return frozenset(f for f, v in zip(CHEST_FINDINGS, row, strict=True) if v) or frozenset({"none"})


@dataclass(frozen=True)
class Judge:
    """A fitted judge: feature standardisation and one logistic regression per finding."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # D x 5
    bias: np.ndarray  # 5
    findings: tuple[str, ...] = CHEST_FINDINGS

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N x 5 logits, one per finding."""
        z = (features(images).astype(np.float64) - self.mean) / self.scale
        return np.asarray(z @ self.weights + self.bias)

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N x 5 probabilities that each finding of :data:`CHEST_FINDINGS` is present."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(images))))

    def predict(self, images: Sequence[np.ndarray], threshold: float = 0.5) -> list[frozenset[str]]:
        """Multi-label verdict per image: the findings above ``threshold``, or ``{"none"}``."""
        return [_label_set(row) for row in self.predict_proba(images) >= threshold]

    def class_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N x 6 probabilities of the exclusive states in :data:`JUDGE_CLASSES` (normal, or exactly one
        finding), renormalised over those six: the judge's answer to "which one class is this?"."""
        logits = self.logits(images)
        s = np.concatenate([np.zeros((len(logits), 1)), logits], axis=1)  # log p_f/(1-p_f) vs normal
        s = np.exp(s - s.max(axis=1, keepdims=True))
        return np.asarray(s / s.sum(axis=1, keepdims=True))

    def classify(self, images: Sequence[np.ndarray]) -> list[str]:
        """One class of :data:`JUDGE_CLASSES` per image (argmax of :meth:`class_proba`)."""
        return [JUDGE_CLASSES[int(i)] for i in self.class_proba(images).argmax(axis=1)]


def fit(images: Sequence[np.ndarray], labels: Sequence[Collection[str]], *, copies: int = 1, seed: int = 0,
        l2: float = 1e-2, max_iter: int = 200) -> Judge:
    """Fit a judge on real radiographs ``images`` with finding-name sets ``labels``.

    Each image is used as is and in ``copies`` :func:`augment`-ed re-renderings (seeded by ``seed``).
    Deterministic: float64, and torch pinned to one thread while fitting (summation order, hence the
    result, does not depend on the machine's thread count).
    """
    import torch

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label sets")
    rng = np.random.default_rng(seed)
    extra = [augment(img, rng) for _ in range(copies) for img in images]
    y = label_matrix(list(labels) * (1 + copies))
    x = features(list(images) + extra).astype(np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        z = torch.from_numpy((x - mean) / scale)
        yt = torch.from_numpy(y)
        w = torch.zeros(z.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, yt) + l2 * (w**2).sum()
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        return Judge(mean, scale, w.detach().numpy().copy(), b.detach().numpy().copy())
    finally:
        torch.set_num_threads(threads)


def study_seed(base: int, i: int) -> int:
    """The ``i``-th study seed of a judge cohort (independent of the cohort's length)."""
    return int(np.random.SeedSequence([base, i]).generate_state(1)[0])


def phantom_set(studies: int, seed: int = JUDGE_SEED, *, balanced: bool = False,
                views: int = 2) -> tuple[list[np.ndarray], list[frozenset[str]]]:
    """Real phantom radiographs and their finding sets: ``studies`` studies, ``views`` views each.

    ``balanced=False`` draws findings as the phantom cohorts do (0-2 per study, 30 % normal);
    ``balanced=True`` cycles through normal and each single finding (as the demo's prompts do).
    """
    images: list[np.ndarray] = []
    labels: list[frozenset[str]] = []
    for i in range(studies):
        forced = JUDGE_CLASSES[i % len(JUDGE_CLASSES)] if balanced else None
        st = generate_chest(study_seed(seed, i), finding=forced)
        names = frozenset(st.finding_names()) or frozenset({"none"})
        for v in st.views[:views]:
            images.append(v)
            labels.append(names)
    return images, labels


def train_judge(studies: int = 240, balanced_studies: int = 60, seed: int = JUDGE_SEED) -> Judge:
    """The standard judge: fitted on ``studies`` natural + ``balanced_studies`` balanced phantom studies
    (both views), seeds from ``seed`` (never the demo's training or held-out seeds)."""
    x, y = phantom_set(studies, seed)
    if balanced_studies:
        xb, yb = phantom_set(balanced_studies, seed + 1, balanced=True)
        x, y = x + xb, y + yb
    return fit(x, y)


def load_image(path: str | Path) -> np.ndarray:
    """A PNG/JPEG radiograph as the judge reads it (uint8 greyscale), under medm2g's picture size limit."""
    from ..io.png import open_picture

    with open_picture(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


# -- statistics ---------------------------------------------------------------------------------------


def retrieval_accuracy(judge: Judge, images_by_class: Mapping[str, Sequence[np.ndarray]]) -> dict[str, Any]:
    """Text -> X-ray retrieval judged independently: the fraction of images generated for class ``c``
    that the judge classifies as ``c`` (:meth:`Judge.classify`), with chance and a one-sided binomial p.

    ``chance`` is 1 / number of classes (a judge guessing uniformly); ``label_shuffle_chance`` is the
    expected accuracy of this judge's own answers under shuffled prompt labels (sum over classes of
    prompt share x answer share), which a judge that always answers one class would reach.
    """
    from scipy.stats import binom

    bad = [c for c in images_by_class if c not in JUDGE_CLASSES]
    if bad:
        raise ValueError(f"unknown class {bad[0]!r}; choose from {', '.join(JUDGE_CLASSES)}")
    confusion = {c: dict.fromkeys(JUDGE_CLASSES, 0) for c in images_by_class}
    for c, imgs in images_by_class.items():
        for g in judge.classify(list(imgs)) if len(imgs) else []:
            confusion[c][g] += 1
    total = sum(sum(row.values()) for row in confusion.values())
    if total == 0:
        raise ValueError("no images to judge")
    correct = sum(confusion[c][c] for c in confusion)
    answered = {g: sum(confusion[c][g] for c in confusion) for g in JUDGE_CLASSES}
    shuffle_chance = sum(sum(confusion[c].values()) * answered[c] for c in confusion) / total**2
    chance = 1.0 / len(JUDGE_CLASSES)
    return {"classes": list(JUDGE_CLASSES), "images": total, "correct": correct, "accuracy": correct / total,
            "chance": chance, "label_shuffle_chance": shuffle_chance,
            "p_value": float(binom.sf(correct - 1, total, chance)),
            "per_class": {c: (confusion[c][c] / n if (n := sum(confusion[c].values())) else math.nan)
                          for c in confusion},
            "confusion": confusion,
            "method": "independent judge (medm2g_cli.metrics.judge): logistic regressions on equalised-image and "
                      "blob features, trained only on real phantom radiographs; most probable single class"}


def accuracy(judge: Judge, images: Sequence[np.ndarray], labels: Sequence[Collection[str]]) -> dict[str, Any]:
    """The judge's accuracy on labelled radiographs (e.g. held-out real phantoms): per finding (present /
    absent), exact finding set, and the six-way :meth:`Judge.classify` accuracy on the images with at
    most one finding, overall and per class."""
    truth = label_matrix(labels) > 0.5
    seen = judge.predict_proba(images) >= 0.5
    sets = [_label_set(row) for row in truth]
    single = [i for i, row in enumerate(truth) if row.sum() <= 1]
    cls = judge.classify([images[i] for i in single]) if single else []
    want = [next(iter(sets[i])) for i in single]
    per_class = {c: float(np.mean([g == c for g, w in zip(cls, want, strict=True) if w == c]))
                 for c in JUDGE_CLASSES if c in want}
    return {"images": len(truth),
            "per_finding": {f: float(v) for f, v in zip(CHEST_FINDINGS, (seen == truth).mean(axis=0), strict=True)},
            "exact_set": float(np.mean([_label_set(a) == b for a, b in zip(seen, sets, strict=True)])),
            "single_label_images": len(single),
            "six_way": float(np.mean([g == w for g, w in zip(cls, want, strict=True)])) if single else math.nan,
            "six_way_per_class": per_class}


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def coherence(judge: Judge, images: Sequence[np.ndarray], reports: Sequence[str], *, permutations: int = 2000,
              seed: int = 0) -> dict[str, Any]:
    """Coherence of image/report pairs: the findings the judge sees in each image (multi-label, "none" when
    none) against the findings its report names (:func:`findings_from_report`), as the mean Jaccard
    index of the two sets and the fraction of exact matches, vs the same statistics on shuffled pairs.

    ``shuffled_*`` is the exact mean over all mismatched pairs (i != j); ``p_value`` is the one-sided
    permutation p of the true mean Jaccard (``permutations`` seeded shuffles).
    """
    if len(images) != len(reports):
        raise ValueError(f"{len(images)} images but {len(reports)} reports")
    n = len(images)
    if n < 2:
        raise ValueError("coherence needs at least 2 pairs")
    seen = judge.predict(images)
    said = [frozenset(findings_from_report(r)) or frozenset({"none"}) for r in reports]
    jac = np.array([[_jaccard(a, b) for b in said] for a in seen])
    exact = np.array([[float(a == b) for b in said] for a in seen])
    off = ~np.eye(n, dtype=bool)
    true_j = float(np.trace(jac) / n)
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    null = np.array([jac[idx, rng.permutation(n)].mean() for _ in range(permutations)])
    return {"pairs": n, "mean_jaccard": true_j, "shuffled_mean_jaccard": float(jac[off].mean()),
            "exact_match": float(np.trace(exact) / n), "shuffled_exact_match": float(exact[off].mean()),
            "p_value": float((1 + np.sum(null >= true_j - 1e-12)) / (1 + permutations)),
            "judge_findings": [sorted(s) for s in seen], "report_findings": [sorted(s) for s in said]}
