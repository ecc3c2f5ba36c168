"""Image autoencoders: diffusers ``AutoencoderKL`` with one input/output channel.

The latent scale factor is not SD's 0.18215 but 1/std of the latents of the user's own data
(CoDi's ``scale_by_std``; method.md section 4.7), computed by :func:`compute_scale_factor` and
stored in ``medm2g.json``.
"""

from __future__ import annotations

import torch

# From the subpackage: mypy types the top-level ``diffusers`` names as its torch-less dummy classes.
from diffusers.models import AutoencoderKL

from ..config import ImageBranchConfig


def build_autoencoder(cfg: ImageBranchConfig) -> AutoencoderKL:
    """A freshly initialised 1-channel KL autoencoder for one imaging branch."""
    ae = cfg.autoencoder
    n = len(ae.block_out_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(ae.block_out_channels),
        layers_per_block=ae.layers_per_block,
        latent_channels=ae.latent_channels,
        norm_num_groups=ae.norm_num_groups,
        sample_size=cfg.image_size,
    )


@torch.no_grad()
def compute_scale_factor(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 16) -> float:
    """1/std of the posterior-mean latents of ``images`` ([N,1,H,W] in [-1, 1]).

    Scaling latents by this makes them unit-variance, the range the diffusion schedule assumes.
    """
    dev = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    chunks = [
        vae.encode(images[i : i + batch_size].to(dev, dtype)).latent_dist.mean.float()
        for i in range(0, images.shape[0], batch_size)
    ]
    std = torch.cat(chunks).std().item()
    return 1.0 / max(std, 1e-6)


def adapt_rgb_autoencoder(src: AutoencoderKL, cfg: ImageBranchConfig | None = None) -> AutoencoderKL:
    """A 1-channel copy of a 3-channel (RGB) autoencoder such as SD-1.5's that keeps its function.

    On a grey image x (in [-1, 1]) the copy computes what ``src`` computes on x replicated to RGB:
    the first convolution *sums* its weights over the three input channels (conv(W, [x, x, x]) =
    conv(sum_c W_c, x)), and the last convolution takes the *mean* of its three output channels'
    weights and biases, so the decoded grey value is the mean of SD's R, G and B. Every other tensor
    is copied unchanged. (Taking the mean on the input side instead scales the first activations by
    1/3 and, through the non-linear encoder, moves the latents by ~50 %.)
    """
    conf = dict(src.config)
    conf["in_channels"] = 1
    conf["out_channels"] = 1
    conf = {k: v for k, v in conf.items() if not k.startswith("_")}
    dst = AutoencoderKL(**conf)
    state = src.state_dict()
    state["encoder.conv_in.weight"] = state["encoder.conv_in.weight"].sum(dim=1, keepdim=True)
    state["decoder.conv_out.weight"] = state["decoder.conv_out.weight"].mean(dim=0, keepdim=True)
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"].mean(dim=0, keepdim=True)
    dst.load_state_dict(state)
    return dst
