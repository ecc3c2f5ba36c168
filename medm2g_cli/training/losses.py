"""Training losses of MedM2G (method.md sections 1.2-1.4).

* :func:`info_nce` — symmetric InfoNCE between two batches of paired embeddings (central alignment,
  text is the centre);
* :func:`barlow_twins` — the visual-invariance loss of Eq. 4 with lambda_1 = 5e-3;
* :func:`epsilon_loss` — the epsilon-prediction MSE of latent diffusion.

All functions are pure torch and reduce to a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAMBDA_1 = 5e-3
"""Off-diagonal weight of Eq. 4 (supplement section D; Barlow Twins' code uses 0.0051)."""

DEFAULT_TAU = 0.07
"""InfoNCE temperature (CLIP's initial value)."""


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float = DEFAULT_TAU, normalize: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE: ``(L_{a->b} + L_{b->a}) / 2`` for N paired rows of ``a`` and ``b``.

    Row i of ``a`` is the positive of row i of ``b``; every other row in the batch is a negative.
    ``L_{a->b} = -1/N sum_i log softmax_j(a_i . b_j / tau)[i]``. With ``normalize`` the rows are
    L2-normalised first (the shared embedding space is a unit sphere).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce needs two [N, D] tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if normalize:
        a = F.normalize(a.float(), dim=-1)
        b = F.normalize(b.float(), dim=-1)
    logits = a.float() @ b.float().t() / tau
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def _standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm without affine parameters: zero mean, unit (biased) variance per dimension."""
    z = z.float()
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C = bn(z1)^T bn(z2) / N, the D x D cross-correlation of Eq. 4."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"barlow_twins needs two [N, D] tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError("barlow_twins needs a batch of at least 2 (statistics are taken over the batch)")
    return _standardise(z1).t() @ _standardise(z2) / z1.shape[0]


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = LAMBDA_1) -> torch.Tensor:
    """Eq. 4: ``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` for two views' embeddings."""
    c = cross_correlation(z1, z2)
    on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def epsilon_loss(eps_pred: torch.Tensor, eps: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between predicted and true noise, ``E ||eps - eps_theta||^2``.

    ``weights`` (one per sample) lets cross-guided flows average over modalities as CoDi does.
    """
    if eps_pred.shape != eps.shape:
        raise ValueError(f"epsilon_loss shapes differ: {tuple(eps_pred.shape)} vs {tuple(eps.shape)}")
    per_sample = (eps_pred.float() - eps.float()).pow(2).flatten(1).mean(dim=1)
    if weights is None:
        return per_sample.mean()
    w = weights.float().to(per_sample.device)
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)
