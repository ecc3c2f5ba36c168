"""Brain phantom subjects: MNI152 anatomy, per-subject deformation, multi-contrast MRI, CT and labels.

Anatomy comes from the MNI152 2009a grey/white-matter maps and skull-stripped T1 that nilearn ships
(read with nibabel straight from ``nilearn/datasets/data``; nilearn itself is never imported). CSF is
``clip(brain mask - GM - WM)``; skull and scalp are shells at fixed distances outside a smoothed brain
envelope. Each subject gets its own smooth random deformation, rigid pose, bias fields, Rician noise
and optionally a tumour, and all contrasts are rendered from one set of tissue fractions so they stay
voxel-aligned with the label map.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ...errors import DependencyError
from .tissues import AIR_HU, CT_HU, TISSUES, signal_table, tissue_signal

MRI_CONTRASTS: tuple[str, ...] = ("t1", "t2", "pd", "flair", "t1ce")
MRI_SCALE = 2000.0  # signal (~0-1.2) -> int16 grey values, similar in range to IXI's files
_TEMPLATE_ORIGIN = np.array([-98.0, -134.0, -72.0])
_TEMPLATE_SHAPE = (197, 233, 189)
_HEAD_CENTRE = np.array([0.0, -18.0, 10.0])  # rotation centre in MNI mm
# Shells outside the smoothed brain envelope, in mm: extra-axial CSF, skull, scalp.
_CSF_SHELL, _BONE_SHELL, _SCALP_SHELL = 2.0, 8.0, 13.0


@dataclass
class BrainSubject:
    """One generated subject: co-registered images, labels and ground-truth metadata.

    ``images`` maps ``t1, t2, pd, flair, t1ce`` (int16 grey values) and ``ct`` (int16 HU) to arrays of
    ``shape``; ``labels`` (uint8, see :data:`tissues.LABELS`) and ``affine`` (RAS, voxel->mm) are shared.
    """

    subject_id: str
    seed: int
    images: dict[str, np.ndarray]
    labels: np.ndarray
    affine: np.ndarray
    finding: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape shared by every image."""
        return tuple(self.labels.shape)  # type: ignore[return-value]

    @property
    def has_tumour(self) -> bool:
        """True when the subject carries a tumour."""
        return bool(self.meta.get("tumour"))

    def brain_mask(self) -> np.ndarray:
        """Brain (GM, WM, tumour, oedema and intra-axial CSF) as a bool array, for skull stripping."""
        lab = self.labels
        return np.isin(lab, (2, 3, 6, 7, 8)) | ((lab == 1) & self.meta["_intra_axial"])


def _data_dir() -> str:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise DependencyError("the MNI152 template files of nilearn are not installed",
                              "pip install --no-deps nilearn (the phantom only reads its bundled data files)")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


@functools.lru_cache(maxsize=1)
def _template() -> dict[str, np.ndarray]:
    """GM, WM, brain mask (1 mm) and the signed distance to the smoothed brain envelope (2 mm)."""
    import nibabel as nib
    from scipy import ndimage as ndi

    d = _data_dir()
    out: dict[str, np.ndarray] = {}
    for name in ("t1", "gm", "wm"):
        path = os.path.join(d, f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        if not os.path.exists(path):
            raise DependencyError(f"MNI152 template file '{path}' is missing", "reinstall nilearn 0.14")
        img = cast(nib.Nifti1Image, nib.load(path))  # load() is typed as the generic FileBasedImage
        out[name] = np.asarray(img.dataobj, dtype=np.float32) / 255.0
    # Same rule as nilearn's load_mni152_brain_mask (T1 > 0.2), plus hole filling so ventricles count.
    mask = ndi.binary_fill_holes(out.pop("t1") > 0.2)
    out["mask"] = mask.astype(np.float32)
    # Envelope: heavily smoothed mask at 2 mm so the skull follows the head, not every sulcus.
    env = ndi.gaussian_filter(mask[::2, ::2, ::2].astype(np.float32), 2.5) > 0.3
    outside = ndi.distance_transform_edt(~env, sampling=2.0)
    inside = ndi.distance_transform_edt(env, sampling=2.0)
    out["dist"] = (outside - inside).astype(np.float32)
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], n: int, amp: float) -> np.ndarray:
    """A low-frequency random field: n^3 Gaussian control values upsampled with cubic splines."""
    from scipy import ndimage as ndi

    coarse = rng.normal(0.0, amp, size=(n, n, n)).astype(np.float32)
    return ndi.zoom(coarse, [s / n for s in shape], order=3, mode="nearest")[: shape[0], : shape[1], : shape[2]]


def _ramp(d: np.ndarray, edge: float, width: float) -> np.ndarray:
    """Partial-volume fraction of the region ``d < edge`` with a linear ramp one voxel wide."""
    return np.clip((edge - d) / width + 0.5, 0.0, 1.0)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rxm = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rym = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rzm = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rzm @ rym @ rxm


def _lobe(x: float, y: float, z: float) -> str:
    """Coarse lobe of an MNI coordinate (mm), good enough for a report sentence."""
    if abs(x) < 22 and -35 < y < 15 and -5 < z < 25:
        return "periventricular white matter"
    if y < -72:
        return "occipital lobe"
    if z < 8 and abs(x) > 28 and -70 < y < 10:
        return "temporal lobe"
    if y < -25 and z >= 8:
        return "parietal lobe"
    return "frontal lobe"


def _finding(tumour: dict[str, Any] | None) -> str:
    if not tumour:
        return ("No acute intracranial abnormality. The ventricles and sulci are normal in size and "
                "configuration. Normal grey-white matter differentiation. No mass, haemorrhage or oedema.")
    side = "right" if tumour["centre_mni"][0] >= 0 else "left"
    a, b, c = (v / 10.0 for v in tumour["size_mm"])
    where = f"{side} {tumour['lobe']}"
    oed = tumour["oedema_mm"]
    oed_txt = ("extensive" if oed >= 15 else "moderate" if oed >= 8 else "mild")
    text = (f"There is a {a:.1f} x {b:.1f} x {c:.1f} cm heterogeneously rim-enhancing mass with central "
            f"necrosis in the {where}. It is surrounded by {oed_txt} vasogenic oedema extending up to "
            f"{oed / 10.0:.1f} cm from the enhancing margin.")
    if max(tumour["size_mm"]) + 2 * oed > 70:
        text += " There is local mass effect with effacement of the adjacent sulci."
    else:
        text += " No significant mass effect or midline shift."
    return text + " Appearances are most in keeping with a high-grade glial neoplasm."


def generate_brain_subject(
    seed: int,
    resolution: int = 2,
    tumour: bool | None = None,
    tumour_rate: float = 0.5,
    subject_id: str | None = None,
    noise: float = 0.02,
) -> BrainSubject:
    """Generate one brain subject deterministically from ``seed``.

    ``resolution`` is the isotropic voxel size in mm (1 or 2; the grid covers the MNI152 field of view).
    ``tumour``: True/False forces a tumour or a healthy subject; None draws one with ``tumour_rate``.
    ``noise`` is the Rician noise sigma relative to the white-matter signal of each contrast.
    """
    from scipy import ndimage as ndi

    if resolution not in (1, 2):
        from ...errors import ConfigError

        raise ConfigError(f"resolution {resolution} mm is not supported", "use --resolution 1 or 2")
    rng = np.random.default_rng(seed)
    tpl = _template()
    r = float(resolution)
    shape = tuple(int(np.ceil(s / r)) for s in _TEMPLATE_SHAPE)
    affine = np.diag([r, r, r, 1.0])
    affine[:3, 3] = _TEMPLATE_ORIGIN

    # -- subject geometry: scaling (head size), rigid pose, smooth non-linear displacement ---------------
    angles = np.deg2rad(rng.uniform(-6, 6, 3))
    shift = rng.uniform(-4, 4, 3)
    scale = rng.uniform(0.93, 1.07, 3)
    a_mat = _rotation(*angles) @ np.diag(scale)
    a_inv = np.linalg.inv(a_mat)
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    tw = a_inv @ (world - _HEAD_CENTRE[:, None] - shift[:, None]) + _HEAD_CENTRE[:, None]
    for ax in range(3):
        tw[ax] += _smooth_field(rng, shape, 5, 3.0).reshape(-1)
    tvox = (tw - _TEMPLATE_ORIGIN[:, None]).astype(np.float32)  # template voxel index (1 mm grid)
    del idx, world

    def sample(arr: np.ndarray, coords: np.ndarray, cval: float) -> np.ndarray:
        return ndi.map_coordinates(arr, coords, order=1, mode="constant", cval=cval).reshape(shape)

    gm = sample(tpl["gm"], tvox, 0.0)
    wm = sample(tpl["wm"], tvox, 0.0)
    mask = sample(tpl["mask"], tvox, 0.0)
    dist = sample(tpl["dist"], tvox / 2.0, 100.0)
    tw_grid = tw.reshape((3, *shape))
    del tvox

    tot = gm + wm
    over = tot > 1
    gm[over] /= tot[over]
    wm[over] /= tot[over]
    inner = np.maximum(_ramp(dist, _CSF_SHELL, r), mask)
    bone_out = np.maximum(_ramp(dist, _BONE_SHELL, r), inner)
    scalp_out = np.maximum(_ramp(dist, _SCALP_SHELL, r), bone_out)
    csf = np.clip(inner - gm - wm, 0.0, 1.0)
    frac = np.stack([csf, gm, wm, bone_out - inner, scalp_out - bone_out,
                     np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)])
    intra_axial = mask > 0.5

    # -- optional tumour ------------------------------------------------------------------------------
    has_tumour = bool(rng.random() < tumour_rate) if tumour is None else bool(tumour)
    tinfo: dict[str, Any] | None = None
    if has_tumour:
        cand = np.argwhere((wm > 0.6) & (tw_grid[2] > -5) & (tw_grid[2] < 55) & (np.abs(tw_grid[0]) > 12))
        c_vox = cand[rng.integers(len(cand))]
        c_mm = affine[:3, :3] @ c_vox + affine[:3, 3]
        r_enh = rng.uniform(7, 19)
        r_core = r_enh * rng.uniform(0.4, 0.7)
        oedema = rng.uniform(4, 20)
        grid_mm = np.indices(shape, dtype=np.float32) * r + _TEMPLATE_ORIGIN[:, None, None, None].astype(np.float32)
        dvec = grid_mm - c_mm[:, None, None, None].astype(np.float32)
        rad = np.sqrt((dvec**2).sum(0)) * (1.0 + _smooth_field(rng, shape, 6, 0.12))  # irregular margins
        del grid_mm, dvec
        brain = np.clip(gm + wm + 0.3 * csf * intra_axial, 0, 1)
        core = _ramp(rad, r_core, r) * inner
        enh = np.clip(_ramp(rad, r_enh, r) * inner - core, 0, 1)
        # vasogenic oedema spreads along white matter, much less into cortex
        oed = np.clip(_ramp(rad, r_enh + oedema, r) - core - enh, 0, 1) * np.clip(wm + 0.35 * gm, 0, 1) * brain
        tum = core + enh + oed
        frac[:5] *= 1.0 - tum
        frac[5], frac[6], frac[7] = core, enh, oed
        lesion = (core + enh) > 0.5
        ext = np.ptp(np.argwhere(lesion), axis=0) + 1 if lesion.any() else np.zeros(3)
        ci = tuple(int(v) for v in c_vox)
        c_mni = tw_grid[(slice(None), *ci)].astype(float)
        tinfo = {
            "centre_mm": [round(float(v), 1) for v in c_mm],
            "centre_mni": [round(float(v), 1) for v in c_mni],
            "lobe": _lobe(*c_mni),
            "side": "right" if c_mni[0] >= 0 else "left",
            "enhancing_radius_mm": round(float(r_enh), 1),
            "core_radius_mm": round(float(r_core), 1),
            "oedema_mm": round(float(oedema), 1),
            "size_mm": [round(float(v) * r, 1) for v in sorted(ext, reverse=True)],
        }
    del tw_grid, tw

    background = np.clip(1.0 - frac.sum(0), 0.0, 1.0)
    labels = np.argmax(np.concatenate([background[None], frac]), axis=0).astype(np.uint8)

    # -- images ---------------------------------------------------------------------------------------
    images: dict[str, np.ndarray] = {}
    flat = frac.reshape(8, -1)
    coords = [np.linspace(-1.0, 1.0, shape[i], dtype=np.float32) for i in range(3)]
    for contrast in MRI_CONTRASTS:
        s = (signal_table(contrast) @ flat).reshape(shape)
        # smooth multiplicative bias field (different per sequence, like real coil sensitivity)
        g = rng.normal(0, 0.12, 6)
        bias = np.exp(g[0] * coords[0][:, None, None] + g[1] * coords[1][None, :, None]
                      + g[2] * coords[2][None, None, :] + g[3] * coords[0][:, None, None] ** 2
                      + g[4] * coords[1][None, :, None] ** 2 + g[5] * coords[2][None, None, :] ** 2)
        s = s * bias
        sigma = noise * tissue_signal("white_matter", contrast)
        n1 = rng.normal(0, sigma, shape).astype(np.float32)
        n2 = rng.normal(0, sigma, shape).astype(np.float32)
        s = np.sqrt((s + n1) ** 2 + n2**2)  # Rician magnitude noise
        images[contrast] = np.clip(np.rint(s * MRI_SCALE), 0, 32767).astype(np.int16)

    hu = np.array([CT_HU[t] for t in TISSUES], np.float32)
    # bone: dense cortical tables (~1500 HU) around cancellous diploe (~750 HU)
    u = np.clip((dist - _CSF_SHELL) / (_BONE_SHELL - _CSF_SHELL), 0, 1)
    bone_hu = 750.0 + 750.0 * np.abs(2 * u - 1) ** 1.5
    ct = (hu[:, None] * flat).sum(0).reshape(shape) - hu[3] * frac[3] + bone_hu * frac[3]
    ct = ct + background * AIR_HU + rng.normal(0, 4.0, shape).astype(np.float32)
    images["ct"] = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    sid = subject_id or f"phantom-{seed}"
    meta = {
        "seed": seed,
        "resolution_mm": r,
        "pose": {"rotation_deg": [round(float(v), 2) for v in np.rad2deg(angles)],
                 "translation_mm": [round(float(v), 2) for v in shift],
                 "scale": [round(float(v), 4) for v in scale]},
        "tumour": tinfo,
        "_intra_axial": intra_axial,
    }
    return BrainSubject(sid, seed, images, labels, affine, _finding(tinfo), meta)
