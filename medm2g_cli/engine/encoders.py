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


def adapt_rgb_vision_encoder(src: CLIPVisionModelWithProjection) -> CLIPVisionModelWithProjection:
    """A 1-channel copy of an RGB CLIP vision encoder (patch-embedding weights averaged over RGB)."""
    conf = src.config.__class__.from_dict(src.config.to_dict())
    conf.num_channels = 1
    dst = CLIPVisionModelWithProjection(conf)
    state = src.state_dict()
    key = "vision_model.embeddings.patch_embedding.weight"
    state[key] = state[key].mean(dim=1, keepdim=True)
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
