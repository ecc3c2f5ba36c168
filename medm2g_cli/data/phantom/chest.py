"""Chest radiograph phantoms (PA view) with controllable findings and IU X-ray-style reports.

The image is a projection: per pixel we build path lengths (cm) through soft tissue, aerated lung,
bone and free air from simple analytic shapes (elliptic-cylinder body, ellipsoidal lungs and heart,
rib/clavicle/spine bands, diaphragm domes), form the line integral ``P = sum mu_i t_i`` with
attenuation coefficients near 60 keV (water 0.20 /cm, inflated lung ~0.05 /cm, bone 0.45 /cm),
draw Poisson photon noise on ``I0 exp(-P)`` and display ``-log(I/I0)`` windowed, so bone is bright and
air dark, as on film. Findings change the shapes (bigger heart, fluid replacing lung air, collapsed
lung with pleural air, airspace opacity, a nodule); the report and the label row come from the same
finding list, so they always agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHEST_FINDINGS: tuple[str, ...] = ("cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation", "nodule")
LOBES: tuple[str, ...] = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
MU_SOFT, MU_LUNG, MU_BONE = 0.20, 0.05, 0.45
FOV_CM = 40.0


@dataclass
class ChestSubject:
    """One chest study: two views (uint8), the finding list with details, report text and masks."""

    study_id: str
    seed: int
    views: list[np.ndarray]
    findings: list[dict[str, Any]]
    report: str
    ctr: float
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def finding_names(self) -> list[str]:
        """Names of the findings present (empty for a normal study)."""
        return [f["name"] for f in self.findings]


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    """1 - r^2 of an ellipse (positive inside)."""
    return 1.0 - ((u - cu) / au) ** 2 - ((v - cv) / av) ** 2


def _smooth_noise(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.zoom(rng.normal(0, 1, (n, n)), size / n, order=3, mode="nearest")[:size, :size]


def _draw_findings(rng: np.random.Generator) -> list[dict[str, Any]]:
    k = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    names = list(rng.choice(CHEST_FINDINGS, size=k, replace=False))
    return [_detail(rng, n) for n in names]


def _detail(rng: np.random.Generator, name: str) -> dict[str, Any]:
    side = str(rng.choice(["right", "left"]))
    if name == "cardiomegaly":
        return {"name": name, "scale": float(rng.uniform(1.3, 1.45))}
    if name == "pleural_effusion":
        return {"name": name, "side": side, "size": str(rng.choice(["small", "moderate"]))}
    if name == "pneumothorax":
        return {"name": name, "side": side, "size": str(rng.choice(["small", "moderate"]))}
    if name == "consolidation":
        return {"name": name, "lobe": str(rng.choice(LOBES))}
    if name == "nodule":
        return {"name": name, "side": side, "zone": str(rng.choice(["upper", "mid", "lower"])),
                "size_cm": round(float(rng.uniform(1.0, 2.5)), 1)}
    raise ValueError(name)


def _report(findings: list[dict[str, Any]]) -> str:
    by = {f["name"]: f for f in findings}
    s: list[str] = []
    s.append("The heart is enlarged." if "cardiomegaly" in by else "The heart is normal in size.")
    s.append("The mediastinum is unremarkable.")
    if "consolidation" in by:
        s.append(f"There is focal airspace consolidation in the {by['consolidation']['lobe']}.")
    if "nodule" in by:
        n = by["nodule"]
        s.append(f"There is a {n['size_cm']:.1f} cm nodule in the {n['side']} {n['zone']} lung zone.")
    if "consolidation" not in by and "nodule" not in by:
        s.append("The lungs are clear.")
    elif "consolidation" not in by:
        s.append("No focal airspace consolidation.")
    if "pleural_effusion" in by:
        e = by["pleural_effusion"]
        s.append(f"There is a {e['size']} {e['side']} pleural effusion.")
    if "pneumothorax" in by:
        p = by["pneumothorax"]
        s.append(f"There is a {p['size']} {p['side']} pneumothorax.")
    if "pleural_effusion" not in by and "pneumothorax" not in by:
        s.append("No pneumothorax or pleural effusion.")
    elif "pleural_effusion" not in by:
        s.append("No pleural effusion.")
    elif "pneumothorax" not in by:
        s.append("No pneumothorax.")
    s.append("The visualized osseous structures are unremarkable.")
    return " ".join(s)


_KEYWORDS = {
    "cardiomegaly": re.compile(r"heart is enlarged|cardiomegaly"),
    "pleural_effusion": re.compile(r"pleural effusion"),
    "pneumothorax": re.compile(r"pneumothorax"),
    "consolidation": re.compile(r"consolidation"),
    "nodule": re.compile(r"nodule"),
}


def findings_from_report(report: str) -> set[str]:
    """Findings asserted (not negated) in a report, by keyword per sentence; a small CheXpert-like labeler."""
    found: set[str] = set()
    for sent in re.split(r"(?<=\.)\s+", report.lower()):
        negated = bool(re.match(r"\s*(no|without|there is no)\b", sent))
        for name, pat in _KEYWORDS.items():
            if pat.search(sent) and not negated:
                found.add(name)
    return found


def _render(rng: np.random.Generator, size: int, findings: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Line integral P (size x size) and anatomy masks. Image left = patient right (PA display)."""
    by = {f["name"]: f for f in findings}
    v, u = np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)
    jit = rng.normal(0, 1, 8) * 0.02
    cm_per_unit = FOV_CM / 2.0
    # body: elliptic cylinder, narrowing to the neck at the top
    half_w = np.where(v < -0.72, 0.22 + 0.7 * np.clip((v + 0.9) / 0.18, 0, 1) ** 2, 0.9 + jit[0])
    body = 22.0 * np.sqrt(np.clip(1 - (u / half_w) ** 2, 0, 1)) * (v > -1.0)
    lung_air = np.zeros_like(u)
    lung_tissue = np.zeros_like(u)
    pleural_air = np.zeros_like(u)
    fluid = np.zeros_like(u)
    masks: dict[str, np.ndarray] = {}
    markings = np.clip(_smooth_noise(rng, size, 48), -1, 3)
    for side, cu in (("right", -0.40 + jit[1]), ("left", 0.40 + jit[2])):
        sgn = -1 if side == "right" else 1
        dome = (0.42 if side == "right" else 0.50) + jit[3]
        lat = (u - cu) * sgn  # positive laterally
        vd = dome + 0.22 * np.clip(lat / 0.4 + 0.3, 0, 2) ** 2  # diaphragm: costophrenic angle lower laterally
        hw = 0.33 * np.clip((v + 0.74) / 0.35, 0, 1) ** 0.5
        inside = np.clip(1 - ((u - cu - 0.03 * sgn) / np.maximum(hw, 1e-3)) ** 2, 0, 1)
        depth = np.clip((vd - v) / 0.12, 0, 1)
        cavity = 16.0 * np.sqrt(inside) * depth
        masks[f"{side}_lung"] = cavity > 0.5
        lung = cavity.copy()
        p = by.get("pneumothorax")
        if p and p["side"] == side:
            k = 0.78 if p["size"] == "small" else 0.62
            inside_c = np.clip(1 - ((u - cu + (1 - k) * 0.2 * sgn) / np.maximum(hw * k, 1e-3)) ** 2, 0, 1)
            depth_c = np.clip((vd - v - (1 - k) * 0.5) / 0.12, 0, 1) * (v > -0.74 + (1 - k) * 0.5)
            lung = np.minimum(cavity, 16.0 * np.sqrt(inside_c) * depth_c)
            pleural_air += cavity - lung
            masks["pneumothorax"] = (cavity - lung) > 1.0
        e = by.get("pleural_effusion")
        if e and e["side"] == side:
            h = 0.22 if e["size"] == "small" else 0.4
            meniscus = vd - h - 0.12 * np.clip(lat / 0.33, 0, 1)  # fluid climbs the lateral chest wall
            wet = np.clip((v - meniscus) / 0.03, 0, 1)
            fluid += lung * wet
            lung = lung * (1 - wet)
            masks["pleural_effusion"] = (wet > 0.5) & masks[f"{side}_lung"]
        lung_air += lung
        hil = np.sqrt((u - cu + 0.2 * sgn) ** 2 + (v - 0.0) ** 2)
        lung_tissue += (lung > 0.5) * 1.2 * np.exp(-hil / 0.35) * (1 + 0.5 * markings)
    # consolidation: lung air replaced by fluid in a blob inside a lobe
    c = by.get("consolidation")
    if c:
        right = c["lobe"].startswith("right")
        cu = -0.45 if right else 0.45
        cv = {"upper": -0.35, "middle": 0.12, "lower": 0.30}[c["lobe"].split()[1]]
        blob = _ellipse(u, v, cu, cv, 0.16, 0.13) + 0.25 * _smooth_noise(rng, size, 10)
        w = np.clip(blob / 0.8, 0, 1) * 0.7
        fluid += lung_air * w * (masks["right_lung" if right else "left_lung"])
        lung_air = lung_air * (1 - w * masks["right_lung" if right else "left_lung"])
        masks["consolidation"] = (w > 0.4) & masks["right_lung" if right else "left_lung"]
    n = by.get("nodule")
    if n:
        r = n["size_cm"] / 2 / cm_per_unit
        cu = (-0.45 if n["side"] == "right" else 0.45) + rng.uniform(-0.08, 0.08)
        cv = {"upper": -0.4, "mid": -0.05, "lower": 0.25}[n["zone"]]
        d2 = (u - cu) ** 2 + (v - cv) ** 2
        sphere = 2 * np.sqrt(np.clip(r**2 - d2, 0, None)) * cm_per_unit
        fluid += sphere
        lung_air = np.maximum(lung_air - sphere, 0)
        masks["nodule"] = d2 < r**2
    # heart and mediastinum displace lung air in projection
    scale = by["cardiomegaly"]["scale"] if "cardiomegaly" in by else 1.0
    hr = _ellipse(u, v, 0.06 * scale, 0.24, 0.3 * scale, 0.24 + 0.03 * (scale - 1))
    heart = 12.0 * np.sqrt(np.clip(hr, 0, 1))
    masks["heart"] = hr > 0
    lung_air = np.maximum(lung_air - heart, 0)
    medi = np.clip(1 - (u / 0.13) ** 2, 0, 1) * (v > -0.75) * (v < 0.5) * 6.0
    lung_air = np.maximum(lung_air - medi, 0)
    trachea = 1.8 * (np.abs(u) < 0.035) * (v > -0.95) * (v < -0.22)
    stomach = 4.0 * np.sqrt(np.clip(_ellipse(u, v, 0.42, 0.7, 0.12, 0.07), 0, 1))
    # bones: spine, posterior ribs, clavicles
    bone = 2.5 * (np.abs(u) < 0.07) * (0.75 + 0.25 * np.cos(v * 40 + jit[4]) ** 2) * (v > -1)
    for k in range(10):
        au = np.abs(u)
        vk = -0.66 + 0.115 * k + jit[5] + 0.55 * np.clip(au - 0.1, 0, None) ** 2 - 0.12 * np.clip(au - 0.1, 0, 0.2)
        band = np.clip(1 - ((v - vk) / 0.022) ** 2, 0, 1) * (au > 0.06) * (au < 0.86)
        bone += 0.9 * np.sqrt(band)
    for sgn in (-1, 1):
        t = np.clip((u * sgn - 0.08) / 0.5, 0, 1)
        vc = -0.68 - 0.07 * t + jit[6]
        band = np.clip(1 - ((v - vc) / 0.025) ** 2, 0, 1) * (u * sgn > 0.08) * (u * sgn < 0.6)
        bone += 1.3 * np.sqrt(band)
    bone *= body > 0
    soft = np.clip(body - lung_air - pleural_air - trachea - stomach - bone, 0, None)
    P = MU_SOFT * soft + MU_LUNG * lung_air + MU_BONE * bone + MU_SOFT * lung_tissue * 0.3
    # thorax width for CTR: outer extent of both lung cavities at their widest row
    thorax = masks["right_lung"] | masks["left_lung"]
    cols = np.where(thorax.any(0))[0]
    hcols = np.where(masks["heart"].any(0))[0]
    ctr = float((np.ptp(hcols) + 1) / (np.ptp(cols) + 1)) if len(cols) and len(hcols) else 0.0
    return P.astype(np.float32), masks, ctr


def _expose(rng: np.random.Generator, P: np.ndarray, photons: float) -> np.ndarray:
    from scipy import ndimage as ndi

    counts = rng.poisson(photons * np.exp(-P)).astype(np.float32)
    d = -np.log(np.maximum(counts, 1.0) / photons)
    d = ndi.gaussian_filter(d, 0.7)
    img = np.clip(d / 6.0, 0, 1) ** 0.75
    return np.rint(img * 255).astype(np.uint8)


def generate_chest(seed: int, size: int = 256, finding: str | list[str] | None = None, study_id: str | None = None) -> ChestSubject:
    """Generate one two-view chest study deterministically from ``seed``.

    ``finding``: None draws 0-2 findings at random; ``"none"`` or ``[]`` gives a normal study; a name or list
    of names from :data:`CHEST_FINDINGS` forces those findings (details such as side still come from the seed).
    """
    from scipy import ndimage as ndi

    from ...errors import ConfigError

    if size not in (256, 512):
        raise ConfigError(f"chest size {size} is not supported", "use --size 256 or 512")
    rng = np.random.default_rng(seed)
    if finding is None:
        findings = _draw_findings(rng)
    else:
        names = [] if finding in ("none", []) else ([finding] if isinstance(finding, str) else list(finding))
        bad = [n for n in names if n not in CHEST_FINDINGS]
        if bad:
            raise ConfigError(f"unknown chest finding {bad[0]!r}", f"choose from: {', '.join(CHEST_FINDINGS)}, none")
        findings = [_detail(rng, n) for n in names]
    P, masks, ctr = _render(rng, size, findings)
    views = [_expose(rng, P, 2.0e4)]
    # second view: same patient, slightly different position and exposure
    P2 = ndi.rotate(P, rng.uniform(-3, 3), reshape=False, order=1, mode="constant")
    P2 = ndi.shift(P2, rng.uniform(-0.02, 0.02, 2) * size, order=1, mode="constant")
    views.append(_expose(rng, P2, 1.5e4))
    sid = study_id or f"CXR{seed:05d}_IM-{seed % 10000:04d}"
    return ChestSubject(sid, seed, views, findings, _report(findings), round(ctr, 4), masks)
