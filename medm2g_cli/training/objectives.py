"""The training objectives of a :class:`~medm2g_cli.engine.model.MedM2G` (method.md sections 1.2-1.4).

Each function computes one stage's loss from the model's components and its one-step output
(:meth:`~medm2g_cli.engine.model.MedM2G.model_output` / ``predict_noise``):

* :func:`autoencoder_loss` — L1 reconstruction + KL of an imaging autoencoder;
* :func:`text_vae_loss` — token cross-entropy + KL of the Optimus-style text VAE;
* :func:`diffusion_loss` — epsilon-MSE (v-MSE for a ``scheduler.v_prediction`` branch) with
  condition dropout to the model's own null condition, the one classifier-free guidance uses;
* :func:`cross_guided_loss` — both branches of a flow, each attending to the other's noisy latent.

The pure-tensor losses (InfoNCE, Barlow Twins) are :mod:`medm2g_cli.training.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812

from .. import modalities

if TYPE_CHECKING:
    from .model_api import TrainableModel


def autoencoder_loss(model: TrainableModel, modality: str, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 reconstruction, KL per sample) of the modality's autoencoder on images in [-1, 1]."""
    vae = model.vae(model.require_branch(modality))
    post = vae.encode(images.to(model.device, model.dtype)).latent_dist
    rec = vae.decode(post.sample()).sample
    return F.l1_loss(rec, images.to(rec.dtype)), post.kl().mean()


def text_vae_loss(model: TrainableModel, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed token cross-entropy, KL) of the text VAE (batch means); total = rec + beta * KL."""
    model.require_branch("text")
    return model.text_vae().loss(list(texts), max_length=max_length)


def diffusion_loss(
    model: TrainableModel,
    target: str,
    x0: torch.Tensor,
    cond: torch.Tensor | None,
    cond_drop_prob: float = 0.1,
    contrast: str | Sequence[str | None] | None = None,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
    sources: Sequence[tuple[str, torch.Tensor]] = (),
) -> torch.Tensor:
    """Epsilon-MSE (v-MSE for a ``scheduler.v_prediction`` branch) of ``target`` on clean scaled latents ``x0``.

    ``cond``: pooled prompt embedding [B, E] (e.g. ``model.embed_text`` or a mix), None =
    unconditional. ``sources``: (name, clean scaled latent) of pixel-aligned imaging sources
    (e.g. ``[("ct", z_ct)]`` when training ``mri`` from CT) that feed context tokens or concat
    slots. Rows are dropped to the null condition with probability ``cond_drop_prob``.
    """
    mod, tcontrast = modalities.split_target(target)
    contrast = contrast if contrast is not None else tcontrast
    b = x0.shape[0]
    dev = x0.device
    sched = model.train_scheduler
    t = timesteps if timesteps is not None else torch.randint(
        0, model.config.scheduler.num_train_timesteps, (b,), device=dev)
    noise = torch.randn_like(x0) if noise is None else noise
    z_t = sched.add_noise(x0, noise, t)  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
    drop = torch.rand(b, device=dev) < cond_drop_prob
    context, concat = model.source_inputs(mod, sources, x0, drop)
    tokens = model.prompt_tokens(mod, cond, contrast, context, drop=drop, batch=b)
    out = model.model_output(mod, z_t, t, tokens, concat)
    want = sched.get_velocity(x0, noise, t) if model.predicts_v(mod) else noise  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
    return F.mse_loss(out.float(), want.float())


def cross_guided_loss(model: TrainableModel, a: tuple[str, torch.Tensor, Any], b: tuple[str, torch.Tensor, Any],
                      cond_drop_prob: float = 0.1, prompts: dict[str, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Epsilon losses of both branches of a flow, each attending to the other's noisy-latent context.

    ``a``/``b`` = (modality, clean scaled latents [B, ...], contrast names per row or None).
    Both sides share the timestep and have independent noise (method.md section 1.4); the
    partner's context tokens come from its *noisy* latent at that timestep, as at sampling.
    ``prompts`` optionally maps a modality to its pooled prompt [B, E] (default null).
    """
    (ma, za, ka), (mb, zb, kb) = a, b
    ma, mb = modalities.split_target(ma)[0], modalities.split_target(mb)[0]
    n = za.shape[0]
    dev = za.device
    sched = model.train_scheduler
    t = torch.randint(0, model.config.scheduler.num_train_timesteps, (n,), device=dev)
    na, nb = torch.randn_like(za), torch.randn_like(zb)
    zta, ztb = sched.add_noise(za, na, t), sched.add_noise(zb, nb, t)  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
    drop = torch.rand(n, device=dev) < cond_drop_prob
    prompts = prompts or {}
    losses = []
    for (m, zt, noise, keys), (pm, pzt) in (((ma, zta, na, ka), (mb, ztb)), ((mb, ztb, nb, kb), (ma, zta))):
        ctx = model.context_tokens(pm, pzt, t)
        tokens = model.prompt_tokens(m, prompts.get(m), keys, [(pm, ctx)], drop=drop, batch=n)
        eps = model.predict_noise(m, zt, t, tokens)
        losses.append(F.mse_loss(eps.float(), noise.float()))
    return losses[0], losses[1]
