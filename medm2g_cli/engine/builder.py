"""Building fresh MedM2G components (seeded, optionally on the meta device).

Initialisation from local pretrained folders is :mod:`medm2g_cli.engine.pretrained`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from .autoencoder import build_autoencoder
from .encoders import build_text_encoder, build_vision_encoder
from .text_vae import LatentHeads, TextVAE, build_bert, build_gpt2
from .tokenizers import train_tokenizer
from .unet import Conditioner, ContextEncoder, FlatUNet, build_image_unet


def flat_unet(cfg: ModelConfig) -> FlatUNet:
    """The text branch's flat UNet for ``cfg``."""
    t = cfg.text
    return FlatUNet(latent_dim=t.latent_dim, channels=t.unet_channels, mult=tuple(t.unet_mult),
                    layers_per_block=t.unet_layers, attention_levels=tuple(t.unet_attention_levels),
                    positions=t.unet_positions, num_heads=t.unet_heads,
                    cross_attention_dim=cfg.cross_attention_dim, norm_num_groups=t.unet_norm_groups)


def context_encoder(cfg: ModelConfig, modality: str) -> ContextEncoder:
    """The context (cross-guidance) encoder of ``modality``."""
    groups = min(cfg.image.norm_num_groups, cfg.context_hidden)
    if modality == "text":
        return ContextEncoder(kind="vector", latent_dim=cfg.text.latent_dim, hidden=cfg.context_hidden,
                              positions=cfg.text.unet_positions, out_dim=cfg.cross_attention_dim,
                              norm_num_groups=groups)
    return ContextEncoder(kind="image", in_channels=cfg.image.latent_channels, hidden=cfg.context_hidden,
                          grid=min(cfg.context_grid, cfg.image.latent_size), out_dim=cfg.cross_attention_dim,
                          norm_num_groups=groups)


def build_parts(cfg: ModelConfig, seed: int = 0, tokenizer_texts: list[str] | None = None,
                device: str | torch.device = "cpu", tokenizers: dict[str, Any] | None = None
                ) -> tuple[dict[str, nn.Module], Any]:
    """Every component of a fresh model with ``cfg`` (seeded) and the text encoder's tokenizer.

    ``tokenizers`` may give ``clip``/``bert``/``gpt2`` tokenizers; the missing ones are trained
    (one byte-level BPE shared by all three) on ``tokenizer_texts``.
    """
    tokenizers = dict(tokenizers or {})
    if not all(k in tokenizers for k in ("clip", "bert", "gpt2")):
        trained = train_tokenizer(tokenizer_texts, vocab_size=cfg.encoders.vocab_size)
        for k in ("clip", "bert", "gpt2"):
            tokenizers.setdefault(k, trained)
    clip_tok, bert_tok, gpt_tok = tokenizers["clip"], tokenizers["bert"], tokenizers["gpt2"]
    parts: dict[str, nn.Module] = {}
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]), (dev if dev.type == "meta" else contextlib.nullcontext()):
        torch.manual_seed(seed)
        for m in cfg.image_modalities:
            parts[f"vae_{m}"] = build_autoencoder(cfg.image)
            parts[f"unet_{m}"] = build_image_unet(cfg)
            parts[f"image_encoder_{m}"] = build_vision_encoder(cfg.encoders)
        if cfg.has_text:
            enc = build_bert(cfg.text, len(bert_tok), bert_tok.pad_token_id)
            dec = build_gpt2(cfg.text, len(gpt_tok), gpt_tok.bos_token_id, gpt_tok.eos_token_id,
                             gpt_tok.pad_token_id)
            heads = LatentHeads(encoder_hidden=cfg.text.encoder_hidden, latent_dim=cfg.text.latent_dim,
                                decoder_hidden=cfg.text.decoder_hidden, decoder_layers=cfg.text.decoder_layers)
            parts["text_vae"] = TextVAE(enc, dec, heads, bert_tok, gpt_tok, cfg.text.max_length, cfg.text.kl_beta)
            parts["unet_text"] = flat_unet(cfg)
        parts["text_encoder"] = build_text_encoder(cfg.encoders, len(clip_tok), clip_tok.pad_token_id,
                                                   clip_tok.bos_token_id, clip_tok.eos_token_id)
        for m in cfg.modalities:
            parts[f"context_encoder_{m}"] = context_encoder(cfg, m)
            parts[f"conditioner_{m}"] = Conditioner(embed_dim=cfg.encoders.embed_dim,
                                                    cross_attention_dim=cfg.cross_attention_dim,
                                                    prompt_scale=prompt_scale(cfg))
    if dev.type != "meta":
        for p in parts.values():
            p.to(dev)
    return parts, clip_tok


def prompt_scale(cfg: ModelConfig) -> float:
    """The conditioners' prompt scale of new models: unit-variance entries for an L2-normalised embedding."""
    return math.sqrt(cfg.encoders.embed_dim)
