"""Prompt encoders in one shared embedding space (text is the centre) and composable conditioning.

- text: transformers ``CLIPTextModelWithProjection`` (the centre, frozen during alignment);
- images: one ``CLIPVisionModelWithProjection`` per imaging modality with ``num_channels=1``;
- :func:`mix_conditions`: CoDi's composable conditioning, a normalised weighted sum of pooled
  embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ..config import EncoderConfig


def build_text_encoder(cfg: EncoderConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int
                       ) -> CLIPTextModelWithProjection:
    """A freshly initialised CLIP-style text encoder projecting to ``cfg.embed_dim``."""
    conf = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_hidden * 4,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.text_max_positions,
        projection_dim=cfg.embed_dim,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )
    return CLIPTextModelWithProjection(conf)


def build_vision_encoder(cfg: EncoderConfig) -> CLIPVisionModelWithProjection:
    """A freshly initialised 1-channel CLIP-style vision encoder projecting to ``cfg.embed_dim``."""
    conf = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_hidden * 4,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.vision_image_size,
        patch_size=cfg.vision_patch_size,
        num_channels=1,
        projection_dim=cfg.embed_dim,
    )
    return CLIPVisionModelWithProjection(conf)


CLIP_PIXEL_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP's image normalisation (``CLIPImageProcessor`` image_mean / image_std)."""


def adapt_rgb_vision_encoder(src: CLIPVisionModelWithProjection,
                             mean: Sequence[float] = CLIP_PIXEL_MEAN, std: Sequence[float] = CLIP_PIXEL_STD
                             ) -> CLIPVisionModelWithProjection:
    """A 1-channel copy of an RGB CLIP vision encoder that keeps its function on grey images.

    The copy takes a grey image x in the model range [-1, 1] (what :meth:`MedM2G.embed_image`
    feeds) and gives the embedding ``src`` gives for x replicated to RGB as CLIP's processor
    prepares it: p = (x + 1) / 2 in [0, 1], then (p - mean_c) / std_c per channel. That input is
    affine in x, so the normalisation folds into the weights: the patch convolution (no bias, stride =
    kernel) gets sum_c W_c / (2 std_c), and the constant part, sum_c (0.5 - mean_c) / std_c * sum(W_c),
    one vector per output channel, is added to the position embeddings of the patch tokens (not the
    class token, which never passes the convolution). Every other tensor is copied unchanged.
    """
    conf = src.config.__class__.from_dict(src.config.to_dict())
    conf.num_channels = 1
    dst = CLIPVisionModelWithProjection(conf)
    state = src.state_dict()
    key = "vision_model.embeddings.patch_embedding.weight"
    w = state[key].double()  # [hidden, 3, k, k]
    m = torch.tensor(list(mean), dtype=torch.float64)[None, :, None, None]
    s = torch.tensor(list(std), dtype=torch.float64)[None, :, None, None]
    state[key] = (w / (2 * s)).sum(dim=1, keepdim=True).to(state[key].dtype)
    shift = (w * (0.5 - m) / s).sum(dim=(1, 2, 3))  # [hidden]
    pos = "vision_model.embeddings.position_embedding.weight"
    table = state[pos].clone()
    table[1:] = (table[1:].double() + shift[None]).to(table.dtype)
    state[pos] = table
    dst.load_state_dict(state)
    return dst


def mix_conditions(embeddings: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Composable conditioning: sum_i w_i e_i with sum_i w_i = 1, re-normalised to unit length.

    ``embeddings`` are [B, E] (L2-normalised); the result stays on the unit sphere where single
    embeddings live, so one condition and a mix look alike to the diffuser.
    """
    if not embeddings:
        raise ValueError("mix_conditions needs at least one embedding")
    w = torch.tensor(list(weights) if weights is not None else [1.0] * len(embeddings), dtype=torch.float32)
    if (w < 0).any() or float(w.sum()) <= 0:
        from ..errors import ConfigError

        raise ConfigError("condition weights must be non-negative and not all zero", "e.g. --weights 0.5,0.5")
    w = w / w.sum()
    mixed = sum(wi.item() * e for wi, e in zip(w, embeddings, strict=True))
    return F.normalize(mixed, dim=-1)
