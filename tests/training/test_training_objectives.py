"""The training objectives and stage rules on the tiny preset: gradients reach what each loss trains."""

from __future__ import annotations

import pytest
import torch

from medm2g_cli.engine import MedM2G
from medm2g_cli.errors import ConfigError
from medm2g_cli.training import objectives
from medm2g_cli.training.model_api import REQUIRED, adapt
from medm2g_cli.training.trainable import cross_guidance_parameters, trainable_parameters


def test_losses_reach_what_they_train(model: MedM2G, images: torch.Tensor) -> None:
    zc = model.encode_image("ct", images).detach()
    zm = model.encode_image("mri", images).detach()
    prompt = model.embed_text(["a", "b"]).detach()
    # every row dropped: the null condition replaces prompt and context, nothing reaches the encoder
    objectives.diffusion_loss(model, "mri", zm, prompt, cond_drop_prob=1.0, sources=[("ct", zc)]).backward()
    g0 = model.parts["context_encoder_ct"].proj.weight.grad
    assert g0 is None or not g0.any()
    assert model.parts["conditioner_mri"].null_context.grad.abs().sum() > 0
    loss = objectives.diffusion_loss(model, "mri", zm, prompt, cond_drop_prob=0.0, contrast=["t1", "t2"],
                                     sources=[("ct", zc)])
    loss.backward()
    unet_grad = model.parts["unet_mri"].conv_in.weight.grad
    ctx_grad = model.parts["context_encoder_ct"].proj.weight.grad
    assert unet_grad is not None and unet_grad.abs().sum() > 0 and ctx_grad.abs().sum() > 0
    la, lb = objectives.cross_guided_loss(model, ("text", model.encode_text(["a", "b"]).detach(), None),
                                          ("xray", zc.detach(), None), cond_drop_prob=0.0)
    (la + lb).backward()
    # the X-ray UNet attends to the text latent's tokens (the text UNet's output layer starts at
    # zero, so at initialisation no gradient flows back through it to the X-ray context)
    assert model.parts["context_encoder_text"].proj.weight.grad.abs().sum() > 0
    rec, kl = objectives.text_vae_loss(model, ["No effusion.", "Mild cardiomegaly noted."])
    rec.backward()
    assert model.parts["text_vae"].heads.to_past.weight.grad.abs().sum() > 0  # latent reaches GPT-2 as past K/V
    r2, k2 = objectives.autoencoder_loss(model, "xray", images)
    assert r2.ndim == 0 and k2.ndim == 0
    model.zero_grad(set_to_none=True)
    stages = {s: trainable_parameters(model, s, ["text", "xray", "ct", "mri"])
              for s in ("autoencoders", "alignment", "diffusion", "multiflow")}
    assert set(stages["autoencoders"]) == {"text_vae", "vae_xray", "vae_ct", "vae_mri"}
    assert "text_encoder" not in stages["alignment"] and "image_encoder_mri" in stages["alignment"]
    assert all(n.startswith(("context_encoder", "conditioner", "unet_")) for n in stages["multiflow"])
    assert cross_guidance_parameters(model, "ct") > 0
    with pytest.raises(ConfigError, match="unknown training stage"):
        trainable_parameters(model, "distillation")


def test_trainable_model_protocol_matches_the_engine(model: MedM2G) -> None:
    """Every member training calls exists on MedM2G; a model lacking one is refused before training."""
    assert "embed_image" in REQUIRED and "train_scheduler" in REQUIRED and "generate" not in REQUIRED
    assert adapt(model) is model

    class Partial(torch.nn.Module):
        image_size = 32

    with pytest.raises(ConfigError, match="lacks training entry points: .*encode_image"):
        adapt(Partial())

