"""Published numbers, transcribed from the MedM2G supplement (arXiv 2403.04290, CVPR 2024) and,
for context, R2Gen (Chen et al., EMNLP 2020, Table 2; via datasets-metrics.md section 3).

Values are copied as printed, ``mean ± std`` where the table gives a std (``None`` otherwise).
SSIM is in %, FID lower is better. Inconsistencies in the source are kept, not "fixed", and noted:
Table A5's last row and Table A6's "Ours" row give different MIMIC-CXR FIDs (1.7 vs 2.7), and
Table A6's "BraTS" column repeats the IXI T2+T1→PD numbers of Table A4 (34.12 / 97.88).

Keys: ``dataset`` uses the CLI's dataset names; ``task`` the fine-tuning task names of
:mod:`medm2g_cli.training.tasks`; ``setting`` the direction as printed (e.g. ``T2+T1→PD``).
"""

from __future__ import annotations

from dataclasses import dataclass

Value = tuple[float, float | None]


@dataclass(frozen=True)
class PublishedRow:
    """One method's numbers for one dataset/task/setting in one table."""

    dataset: str
    task: str
    setting: str
    method: str
    metrics: dict[str, Value]
    source: str
    note: str = ""


def _r(dataset: str, task: str, setting: str, method: str, source: str, note: str = "", **m: Value) -> PublishedRow:
    return PublishedRow(dataset, task, setting, method, dict(m), source, note)


_A4 = "MedM2G supplement Table A4"
_A5 = "MedM2G supplement Table A5"
_A6 = "MedM2G supplement Table A6"
_A7 = "MedM2G supplement Table A7"
_R2 = "R2Gen (EMNLP 2020) Table 2"

# Table A4: MRI synthesis, PSNR / SSIM(%) mean ± std.
_A4_ROWS = [
    # method, BRATS ->T1ce (psnr, ssim), BRATS ->FLAIR (psnr, ssim), IXI ->PD (psnr, ssim)
    ("MM-GAN", (26.30, 1.91), (91.22, 2.08), (24.09, 2.14), (88.32, 1.98), (30.61, 1.25), (95.42, 1.78)),
    ("Hi-Net", (27.02, 1.26), (93.35, 1.34), (25.87, 2.82), (91.22, 2.13), (31.79, 1.66), (96.51, 2.23)),
    ("ProvoGAN", (29.26, 2.50), (93.96, 2.34), (25.64, 2.77), (90.42, 3.13), (29.93, 2.13), (94.62, 2.46)),
    ("LDM", (25.61, 2.48), (89.18, 2.55), (23.12, 3.16), (86.90, 3.24), (27.36, 1.96), (91.52, 2.16)),
    ("CoLa-Diff", (29.35, 2.40), (94.18, 2.46), (26.68, 2.74), (91.89, 3.11), (32.24, 1.86), (96.95, 2.61)),
    ("MedM2G", (30.12, 1.78), (95.32, 2.64), (27.89, 2.84), (93.01, 1.68), (34.12, 1.82), (97.88, 2.82)),
]

PUBLISHED: list[PublishedRow] = []
for _m, p1, s1, p2, s2, p3, s3 in _A4_ROWS:
    PUBLISHED += [
        _r("brats2020", "mri-synthesis", "T2+T1+FLAIR→T1ce", _m, _A4, psnr=p1, ssim=s1),
        _r("brats2020", "mri-synthesis", "T2+T1ce+T1→FLAIR", _m, _A4, psnr=p2, ssim=s2),
        _r("ixi", "mri-synthesis", "T2+T1→PD", _m, _A4, psnr=p3, ssim=s3),
    ]

# Table A5: ablation of MedM2G's pre-training datasets (all rows are MedM2G).
_A5_ROWS = [
    ("MedM2G (pre-train MIMIC)", (0.389, 0.009), (0.129, 0.011), (0.283, 0.012), 20.13, 3.1,
     (33.76, 2.12), (97.41, 1.87), (27.22, 0.23), (88.68, 1.49)),
    ("MedM2G (pre-train MIMIC+MediCat)", (0.399, 0.008), (0.136, 0.012), (0.298, 0.011), 16.68, 2.2,
     (33.98, 1.68), (97.67, 1.72), (27.38, 0.37), (88.99, 1.47)),
    ("MedM2G (pre-train MIMIC+MediCat+MRI-CT)", (0.412, 0.007), (0.142, 0.010), (0.309, 0.009), 15.89, 1.7,
     (34.12, 1.98), (97.88, 1.89), (27.45, 0.19), (89.23, 1.54)),
]
for _m, b1, b4, rl, fid_acdc, fid_mimic, bp, bs, pp, ps in _A5_ROWS:
    PUBLISHED += [
        _r("mimic-cxr", "report-generation", "X-ray→report", _m, _A5, BLEU_1=b1, BLEU_4=b4, ROUGE_L=rl),
        _r("acdc", "image-generation", "text→MRI", _m, _A5, fid=(fid_acdc, None)),
        _r("mimic-cxr", "xray-generation", "report→X-ray", _m, _A5, fid=(fid_mimic, None)),
        _r("brats2020", "mri-synthesis", "T2+T1→PD", _m, _A5,
           "the table's BraTS2020 column is headed T2+T1→PD (BraTS has no PD); values equal Table A4's IXI T2+T1→PD",
           psnr=bp, ssim=bs),
        _r("gold-atlas-pelvis", "mri-ct-translation", "T2→CT", _m, _A5, psnr=pp, ssim=ps),
    ]

# Table A6: general multi-modal generators ("original" pre-training vs M+M+MC = MIMIC+MediCat+MRI-CT).
_A6_ROWS = [
    ("VD (original, 700M)", (0.356, 0.008), (0.008, 0.009), (0.254, 0.006), 30.12, 12.7,
     (28.97, 2.12), (78.45, 2.33), (17.87, 0.98), (71.43, 1.34)),
    ("VD (M+M+MC, 598K)", (0.368, 0.010), (0.112, 0.008), (0.262, 0.006), 26.67, 9.8,
     (29.88, 2.13), (80.12, 2.54), (19.21, 1.12), (75.67, 1.18)),
    ("BIND (original, 2270K)", (0.362, 0.006), (0.101, 0.009), (0.259, 0.011), 32.14, 14.6,
     (27.66, 1.45), (71.12, 1.87), (15.43, 1.13), (65.38, 1.88)),
    ("BIND (M+M+MC, 598K)", (0.373, 0.005), (0.109, 0.011), (0.265, 0.007), 28.34, 11.2,
     (28.34, 2.22), (75.34, 2.32), (18.78, 1.05), (69.23, 1.97)),
    ("CoDi (original, 512M)", (0.369, 0.006), (0.106, 0.011), (0.266, 0.005), 25.12, 10.9,
     (29.12, 2.11), (80.68, 1.86), (19.12, 0.88), (73.23, 1.22)),
    ("CoDi (M+M+MC, 598K)", (0.381, 0.008), (0.119, 0.009), (0.273, 0.010), 22.32, 7.8,
     (30.78, 2.45), (84.44, 2.01), (22.32, 1.43), (78.86, 1.89)),
    ("MedM2G (M+M+MC, 598K)", (0.412, 0.007), (0.142, 0.010), (0.309, 0.009), 15.89, 2.7,
     (34.12, 1.98), (97.88, 1.89), (27.45, 0.19), (89.23, 1.54)),
]
for _m, b1, b4, rl, fid_acdc, fid_mimic, bp, bs, pp, ps in _A6_ROWS:
    PUBLISHED += [
        _r("mimic-cxr", "report-generation", "X-ray→report", _m, _A6, BLEU_1=b1, BLEU_4=b4, ROUGE_L=rl),
        _r("acdc", "image-generation", "text→MRI", _m, _A6, fid=(fid_acdc, None)),
        _r("mimic-cxr", "xray-generation", "report→X-ray", _m, _A6, fid=(fid_mimic, None),
           note="Table A5 gives 1.7 for the same MedM2G model" if _m.startswith("MedM2G") else ""),
        _r("brats2020", "mri-synthesis", "T2+T1→PD", _m, _A6,
           "task not named in Table A6; MedM2G's values equal Table A4's IXI T2+T1→PD", psnr=bp, ssim=bs),
        _r("gold-atlas-pelvis", "mri-ct-translation", "T2→CT", _m, _A6, psnr=pp, ssim=ps),
    ]

# Table A7: text-to-image FID.
_A7_ROWS = [
    ("Stable Diffusion-1.4", 20.13, 35.32, 38.76),
    ("CogView", 16.45, 31.23, 30.17),
    ("Versatile Diffusion", 11.43, 26.67, 24.39),
    ("LDM", 10.33, 26.02, 21.72),
    ("CoDi", 8.68, 22.32, 15.21),
    ("Make-a-Scene", 5.33, 21.17, 10.78),
    ("GLIDE", 2.89, 20.19, 8.45),
    ("MedM2G", 1.84, 15.89, 6.89),
]
for _m, f_cx, f_acdc, f_sl in _A7_ROWS:
    PUBLISHED += [
        _r("chestxray14", "image-generation", "text→X-ray", _m, _A7, fid=(f_cx, None)),
        _r("acdc", "image-generation", "text→MRI", _m, _A7, fid=(f_acdc, None)),
        _r("sliver07", "image-generation", "text→CT", _m, _A7, fid=(f_sl, None)),
    ]

# R2Gen reference numbers (not in the MedM2G supplement; context for the report-generation protocol).
PUBLISHED += [
    _r("iu-xray", "report-generation", "X-ray→report", "R2Gen", _R2, BLEU_1=(0.470, None), BLEU_2=(0.304, None),
       BLEU_3=(0.219, None), BLEU_4=(0.165, None), METEOR=(0.187, None), ROUGE_L=(0.371, None)),
    _r("mimic-cxr", "report-generation", "X-ray→report", "R2Gen", _R2, BLEU_1=(0.353, None), BLEU_2=(0.218, None),
       BLEU_3=(0.145, None), BLEU_4=(0.103, None), METEOR=(0.142, None), ROUGE_L=(0.277, None)),
]

DATASETS = ("ixi", "brats2020", "gold-atlas-pelvis", "mimic-cxr", "iu-xray", "chestxray14", "acdc", "sliver07")


def _norm(s: str) -> str:
    return s.lower().replace("_", "-").replace(" ", "").replace("->", "→")


def published_for(dataset: str, task: str | None = None, setting: str | None = None) -> list[PublishedRow]:
    """Published rows for a dataset (and task / setting when given), in table order."""
    d = _norm(dataset)
    if d == "brats":
        d = "brats2020"
    rows = [r for r in PUBLISHED if r.dataset == d]
    if task:
        rows = [r for r in rows if r.task == _norm(task)]
    if setting:
        rows = [r for r in rows if _norm(r.setting) == _norm(setting)]
    return rows
