"""Tissue parameters and MR/CT signal models of the brain phantom.

Relaxation times and proton densities at 1.5 T for the normal tissues are those of the BrainWeb
simulator (Kwan, Evans & Pike, IEEE TMI 18(11):1085-1097, 1999; Collins et al., IEEE TMI 17(3), 1998):
CSF T1 2569 / T2 329 ms / PD 1.0, GM 833 / 83 / 0.86, WM 500 / 70 / 0.77, fat 350 / 70 / 1.0.
Cortical bone has a very short T2 (~1 ms, Du & Bydder, NMR Biomed 2013) and a low visible PD.
Tumour values are typical glioblastoma figures at 1.5 T (Ellingson et al., AJNR 2012; Hattingen et
al., Neuro-Oncology 2017): necrosis long T1/T2, enhancing tumour T1 ~1300 ms which gadolinium
(r1 ~4 /mM/s, 0.1 mmol/kg, tissue concentration ~0.3 mM in the rim) shortens to ~400 ms, vasogenic
oedema T1 ~1200 ms / T2 ~200 ms.

Sequences: the IXI protocol of the MedM2G supplement (C.3) gives T1: TE 4.6 ms, TR 9.81 ms; T2: TE 100 ms,
TR 8178.34 ms; PD: TE 8 ms, TR 8178.34 ms. The supplement gives no flip angle; the IXI T1 is a Philips
3-D T1-FFE (spoiled gradient echo) with flip angle 8 degrees in IXI's published protocol, which we use.
FLAIR and T1ce are not in C.3; we use a typical BraTS-site protocol (FLAIR TR 9000 / TE 120 ms with the
inversion time that nulls CSF; T1ce = the same spoiled gradient echo as T1 after gadolinium).
"""

from __future__ import annotations

import numpy as np

# Label values of the phantom label map.
LABELS: dict[int, str] = {
    0: "background",
    1: "csf",
    2: "grey_matter",
    3: "white_matter",
    4: "bone",
    5: "scalp",
    6: "tumour_core",
    7: "enhancing_tumour",
    8: "oedema",
}
TISSUES: tuple[str, ...] = tuple(LABELS[i] for i in range(1, 9))

# (T1 ms, T2 ms, PD) at 1.5 T; sources in the module docstring.
MR_PARAMS: dict[str, tuple[float, float, float]] = {
    "csf": (2569.0, 329.0, 1.0),
    "grey_matter": (833.0, 83.0, 0.86),
    "white_matter": (500.0, 70.0, 0.77),
    "bone": (300.0, 1.0, 0.05),
    "scalp": (350.0, 70.0, 1.0),  # dominated by subcutaneous fat
    "tumour_core": (2200.0, 250.0, 0.95),  # necrosis
    "enhancing_tumour": (1300.0, 110.0, 0.9),
    "oedema": (1200.0, 200.0, 0.9),
}
# T1 after gadolinium: 1/T1' = 1/T1 + r1*C (r1 = 4 /mM/s). Only the enhancing rim (broken blood-brain
# barrier) takes up contrast in this phantom.
GD_R1_PER_MM_S = 4.0
GD_CONCENTRATION_MM: dict[str, float] = {"enhancing_tumour": 0.45, "scalp": 0.05}

SEQUENCES: dict[str, dict[str, float]] = {
    "t1": {"kind": 0, "tr": 9.81, "te": 4.6, "flip": 8.0},
    "t1ce": {"kind": 0, "tr": 9.81, "te": 4.6, "flip": 8.0},
    "t2": {"kind": 1, "tr": 8178.34, "te": 100.0},
    "pd": {"kind": 1, "tr": 8178.34, "te": 8.0},
    "flair": {"kind": 2, "tr": 9000.0, "te": 120.0},
}

# Hounsfield units per tissue (non-contrast head CT).
CT_HU: dict[str, float] = {
    "csf": 8.0,
    "grey_matter": 40.0,
    "white_matter": 28.0,
    "bone": 1100.0,  # modulated per voxel 700-1500 (diploe vs cortical tables)
    "scalp": 30.0,  # mix of skin/muscle (40) and fat (-100)
    "tumour_core": 18.0,
    "enhancing_tumour": 38.0,
    "oedema": 20.0,
}
AIR_HU = -1000.0


def _t1(tissue: str, contrast: str) -> float:
    t1 = MR_PARAMS[tissue][0]
    if contrast == "t1ce" and tissue in GD_CONCENTRATION_MM:
        t1 = 1.0 / (1.0 / t1 + GD_R1_PER_MM_S * GD_CONCENTRATION_MM[tissue] / 1000.0)
    return t1


def tissue_signal(tissue: str, contrast: str) -> float:
    """Noise-free signal of a pure tissue for one contrast (arbitrary units, ~0-1).

    t1/t1ce: spoiled gradient echo ``PD sin(a)(1-E1)/(1-cos(a)E1) exp(-TE/T2)`` (T2 stands in for T2*);
    t2/pd: spin echo ``PD (1-exp(-TR/T1)) exp(-TE/T2)``; flair: inversion recovery
    ``PD |1 - 2exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` with TI nulling CSF.
    """
    seq = SEQUENCES[contrast]
    t1, t2, pd = _t1(tissue, contrast), MR_PARAMS[tissue][1], MR_PARAMS[tissue][2]
    tr, te = seq["tr"], seq["te"]
    e2 = np.exp(-te / t2)
    if seq["kind"] == 0:
        a = np.deg2rad(seq["flip"])
        e1 = np.exp(-tr / t1)
        # x8 brings the small gradient-echo signal to the ~0-1 range of the spin-echo contrasts
        return float(8.0 * pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * e2)
    if seq["kind"] == 1:
        return float(pd * (1 - np.exp(-tr / t1)) * e2)
    csf_t1 = MR_PARAMS["csf"][0]
    ti = csf_t1 * np.log(2.0 / (1.0 + np.exp(-tr / csf_t1)))
    return float(pd * abs(1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * e2)


def signal_table(contrast: str) -> np.ndarray:
    """Signals of the eight tissues (label 1..8 order) for one contrast."""
    return np.array([tissue_signal(t, contrast) for t in TISSUES], dtype=np.float32)
