"""Evaluation metrics with the reference implementations' exact conventions.

* :mod:`.image` — PSNR, SSIM (Wang et al. Gaussian settings, vectorised over slices), MAE.
* :mod:`.protocols` — how volumes become scored slices (default and SynDiff's ``test.py``), masks.
* :mod:`.text` — BLEU-1..4, METEOR, ROUGE-L, CIDEr-D through pycocoevalcap, scored as R2Gen does.
* :mod:`.fid` — the pytorch-fid Inception-v3 network and the closed-form Fréchet distance.
* :mod:`.published` — numbers transcribed from the MedM2G supplement, for side-by-side tables.
* :mod:`.tables` — rich and Markdown tables shaped like the paper's.
"""
