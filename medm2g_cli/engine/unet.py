"""Diffusers of MedM2G: the image UNet (diffusers ``UNet2DConditionModel``), the flat text UNet
(Versatile-Diffusion style), the context encoders that turn a latent into cross-attention tokens
(cross-guidance), and the per-branch conditioner that builds the cross-attention sequence.

Every module here is a diffusers ``ModelMixin``/``ConfigMixin``, so it saves as
``config.json`` + ``diffusion_pytorch_model.safetensors`` and loads on its own with
``Class.from_pretrained(folder)``.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F  # noqa: N812
from diffusers.configuration_utils import ConfigMixin, register_to_config

# From the subpackage: mypy types the top-level ``diffusers`` names as its torch-less dummy classes.
from diffusers.models import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .. import modalities
from ..config import ModelConfig

SOURCE_KEYS: tuple[str, ...] = tuple(modalities.MODALITIES) + tuple(modalities.MRI_CONTRASTS)
"""Names a condition can carry (modality or MRI contrast); index into the source embedding."""


def build_image_unet(cfg: ModelConfig) -> UNet2DConditionModel:
    """The image diffuser of one branch: SD-1.x layout at ``full`` (Table A3).

    In ``concat`` mode the source latents (``concat_slots`` of them) are stacked on the noisy
    latent, so ``in_channels`` grows; ``out_channels`` stays the latent channels (epsilon).
    """
    img = cfg.image
    c = img.latent_channels
    in_ch = c * (1 + cfg.concat_slots) if cfg.conditioning == "concat" else c
    return UNet2DConditionModel(
        sample_size=img.latent_size,
        in_channels=in_ch,
        out_channels=c,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in img.attention_levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(img.attention_levels)),
        block_out_channels=tuple(img.block_out_channels),
        layers_per_block=img.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        # diffusers' SD configs call the number of heads "attention_head_dim" (8 for SD-1.5); with
        # head_channels the heads per level follow the width (same parameters, another head split).
        attention_head_dim=(img.num_heads if img.head_channels is None
                            else tuple(ch // img.head_channels for ch in img.block_out_channels)),
        norm_num_groups=img.norm_num_groups,
    )


class FCResBlock(nn.Module):
    """VD's ``FCBlock_MultiDim``: a ResBlock of per-position linear layers over [B, C, P]."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.lin1 = nn.Conv1d(in_ch, out_ch, 1)
        self.temb = nn.Linear(temb_ch, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.lin2 = nn.Conv1d(out_ch, out_ch, 1)
        nn.init.zeros_(self.lin2.weight)  # zero-init: the block starts as the identity (skip)
        assert self.lin2.bias is not None  # Conv1d has a bias by default
        nn.init.zeros_(self.lin2.bias)
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.lin1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None]
        h = self.lin2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class FlatAttention(nn.Module):
    """Self-attention over the P positions plus cross-attention to the condition tokens."""

    def __init__(self, ch: int, heads: int, cross_dim: int) -> None:
        super().__init__()
        self.block = BasicTransformerBlock(ch, heads, ch // heads, cross_attention_dim=cross_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.block(x.transpose(1, 2), encoder_hidden_states=context).transpose(1, 2)


class FlatUNet(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: ModelMixin/ConfigMixin type config_name differently
    """The text diffuser: a UNet over a latent *vector* (VD ``UNetModel0D`` / diffusers ``UNetFlatConditionModel``).

    The D-d latent is lifted to [C, P] (P "positions", VD's ``second_dim``); levels of
    :class:`FCResBlock` (+ attention at the flagged levels) go down and back up with skip
    connections; a zero-initialised linear maps back to D (epsilon).
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 768,
        channels: int = 320,
        mult: tuple[int, ...] = (1, 2, 4, 4),
        layers_per_block: int = 2,
        attention_levels: tuple[bool, ...] = (True, True, True, False),
        positions: int = 4,
        num_heads: int = 8,
        cross_attention_dim: int = 768,
        norm_num_groups: int = 32,
    ) -> None:
        super().__init__()
        temb = channels * 4
        self.time_proj = Timesteps(channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels, temb)
        self.proj_in = nn.Linear(latent_dim, channels * positions)
        g = norm_num_groups
        self.down = nn.ModuleList()
        skips = [channels]
        ch = channels
        for level, m in enumerate(mult):
            for _ in range(layers_per_block):
                out = channels * m
                attn = FlatAttention(out, num_heads, cross_attention_dim) if attention_levels[level] else None
                self.down.append(nn.ModuleList([FCResBlock(ch, out, temb, g), attn or nn.Identity()]))
                ch = out
                skips.append(ch)
            if level < len(mult) - 1:
                # VD replaces spatial downsampling by a linear layer (LinearMultiDim); it also
                # keeps the skip count of an SD UNet (one per block + one per level transition).
                self.down.append(nn.Conv1d(ch, ch, 1))
                skips.append(ch)
        self.mid = nn.ModuleList([FCResBlock(ch, ch, temb, g), FlatAttention(ch, num_heads, cross_attention_dim),
                                  FCResBlock(ch, ch, temb, g)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for _ in range(layers_per_block + 1):
                out = channels * m
                attn = FlatAttention(out, num_heads, cross_attention_dim) if attention_levels[level] else None
                self.up.append(nn.ModuleList([FCResBlock(ch + skips.pop(), out, temb, g), attn or nn.Identity()]))
                ch = out
        self.norm_out = nn.GroupNorm(g, ch)
        self.proj_out = nn.Linear(ch * positions, latent_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Predict epsilon for latent vectors ``sample`` [B, D] at ``timestep`` given tokens [B, N, cross]."""
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        p = self.config["positions"]
        h = self.proj_in(sample).reshape(b, p, -1).transpose(1, 2)  # [B, C, P]
        hs = [h]
        for block in self.down:
            if isinstance(block, nn.Conv1d):
                h = block(h)
            else:
                res, attn = cast(nn.ModuleList, block)
                h = res(h, temb)
                h = attn(h, encoder_hidden_states) if isinstance(attn, FlatAttention) else h
            hs.append(h)
        h = self.mid[0](h, temb)
        h = self.mid[1](h, encoder_hidden_states)
        h = self.mid[2](h, temb)
        for pair in self.up:
            res, attn = cast(nn.ModuleList, pair)
            h = res(torch.cat([h, hs.pop()], dim=1), temb)
            h = attn(h, encoder_hidden_states) if isinstance(attn, FlatAttention) else h
        h = F.silu(self.norm_out(h))
        return self.proj_out(h.transpose(1, 2).reshape(b, -1))


class ContextEncoder(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: ModelMixin/ConfigMixin type config_name differently
    """Cross-guidance context encoder: a (possibly noisy) latent -> a sequence of tokens.

    ``kind="image"``: conv + timestep-conditioned ResBlocks, adaptive pooling to a
    ``grid x grid`` token grid (so any latent size works), learned position embeddings and a
    projection to the cross-attention width: the target UNet attends to *where* things are in the
    source, which a single pooled embedding cannot carry. ``kind="vector"``: a text latent is
    split into ``positions`` tokens. Clean sources use timestep 0, so tokens of a fixed source are
    computed once per generation, not per step.
    """

    @register_to_config
    def __init__(
        self,
        kind: str = "image",
        in_channels: int = 4,
        latent_dim: int = 768,
        hidden: int = 256,
        grid: int = 8,
        positions: int = 4,
        out_dim: int = 768,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(hidden, hidden)
        if kind == "image":
            self.conv_in = nn.Conv2d(in_channels, hidden, 3, padding=1)
            self.res1 = ResnetBlock2D(in_channels=hidden, out_channels=hidden, temb_channels=hidden,
                                      groups=norm_num_groups)
            self.res2 = ResnetBlock2D(in_channels=hidden, out_channels=hidden, temb_channels=hidden,
                                      groups=norm_num_groups)
            n_tokens = grid * grid
        elif kind == "vector":
            self.lift = nn.Linear(latent_dim, positions * hidden)
            self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))
            n_tokens = positions
        else:
            raise ValueError(f"unknown context encoder kind {kind!r}")
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, hidden) * 0.02)
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, out_dim)

    @property
    def num_tokens(self) -> int:
        """Tokens produced per sample."""
        return self.pos_embed.shape[1]

    def forward(self, latent: torch.Tensor, timestep: torch.Tensor | float | int = 0) -> torch.Tensor:
        """Tokens [B, N, out_dim] of ``latent`` ([B, C, h, w] or [B, D]) at ``timestep`` (0 = clean)."""
        b = latent.shape[0]
        t = torch.as_tensor(timestep, device=latent.device).reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(t).to(latent.dtype))
        if self.config["kind"] == "image":
            h = self.res1(self.conv_in(latent), temb)
            g = self.config["grid"]
            h = F.adaptive_avg_pool2d(h, (g, g))
            h = self.res2(h, temb)
            tokens = h.flatten(2).transpose(1, 2)
        else:
            tokens = self.lift(latent).reshape(b, self.config["positions"], -1) + temb[:, None]
            tokens = tokens + self.mlp(tokens)
        return self.proj(self.norm(tokens + self.pos_embed))


class Conditioner(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: ModelMixin/ConfigMixin type config_name differently
    """Builds one branch's cross-attention sequence ``[prompt, contrast, context tokens...]``.

    - prompt: the pooled, L2-normalised, weight-mixed prompt embedding, multiplied by
      ``prompt_scale`` and projected to the cross-attention width (one token). New models use
      sqrt(embed_dim), so the embedding enters with unit-variance entries like the other tokens (the
      learned contrast token has norm ~sqrt(width)); at 1.0 (models saved before the option) the
      prompt token was ~13x smaller than the contrast token and the report diffuser learned to
      ignore it;
    - contrast: a learned token naming the target MRI contrast (index 0 = none); it describes
      the task, so classifier-free guidance keeps it in the unconditional half;
    - context tokens of each source (from :class:`ContextEncoder`) plus a learned embedding of
      the source's modality/contrast, scaled by the source's mixing weight; dropped conditions use
      the learned ``null_context`` token in every context slot.
    """

    @register_to_config
    def __init__(self, embed_dim: int = 768, cross_attention_dim: int = 768,
                 source_keys: tuple[str, ...] = SOURCE_KEYS,
                 contrasts: tuple[str, ...] = modalities.MRI_CONTRASTS, prompt_scale: float = 1.0) -> None:
        super().__init__()
        self.prompt_scale = float(prompt_scale)
        self.prompt_proj = nn.Linear(embed_dim, cross_attention_dim)
        self.contrast_embed = nn.Embedding(len(contrasts) + 1, cross_attention_dim)
        self.source_embed = nn.Embedding(len(source_keys), cross_attention_dim)
        self.null_context = nn.Parameter(torch.randn(1, 1, cross_attention_dim) / math.sqrt(cross_attention_dim))

    def prompt_token(self, pooled: torch.Tensor) -> torch.Tensor:
        """The prompt token [B, cross] of pooled embeddings [B, E]."""
        return cast(torch.Tensor, self.prompt_proj(pooled * self.prompt_scale))

    @torch.no_grad()
    def set_prompt_scale(self, scale: float) -> None:
        """Change ``prompt_scale`` without changing the function (the projection is rescaled): a
        trained model moves to the current convention, and further training sees the larger input."""
        self.prompt_proj.weight.mul_(self.prompt_scale / scale)
        self.prompt_scale = float(scale)
        self.register_to_config(prompt_scale=float(scale))

    def contrast_index(self, contrast: str | None) -> int:
        """Index of ``contrast`` in the contrast table (0 = no contrast)."""
        if contrast is None:
            return 0
        return list(self.config["contrasts"]).index(contrast) + 1

    def source_index(self, key: str) -> int:
        """Index of a source name (modality or contrast)."""
        return list(self.config["source_keys"]).index(key)
