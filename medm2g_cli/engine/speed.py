"""Inference speed options applied to a loaded :class:`~medm2g_cli.engine.model.MedM2G` in place.

What is always on (no option needed), and where it lives:

- classifier-free guidance runs conditional and unconditional rows in ONE batched forward
  (:meth:`MedM2G.guided_noise` / :meth:`MedM2G.generate`);
- many slices per forward (``generate(batch_size=...)``, ``translate_sources(batch_size=...)``);
- conditioning (prompt embeddings, context-encoder tokens of the source slices) is computed once
  per slice batch, before the step loop, never once per step;
- ``torch.inference_mode`` around sampling; VAE decoding in chunks of the batch size (sliced);
- volumes are streamed slice batch by slice batch into a preallocated output
  (:func:`medm2g_cli.inference.pipeline.translate_sources`).

What :func:`optimize_for_inference` adds (performance.md section 5):

- PyTorch scaled-dot-product attention (``AttnProcessor2_0``) on every diffusers block, so a
  model whose processors were swapped (e.g. for FLOP counting) runs the fused kernel again;
- ``channels_last`` memory format for the UNets and autoencoders (default: on for CUDA only; on
  small CPU models it is not reliably faster);
- ``torch.compile`` of the UNets (opt-in: minutes of compile time, recompiles on a shape change);
- VAE tiling for images larger than the model size (opt-in; tiles are blended, so unlike every
  other option it is *not* exact — diffusers only tiles when the latent exceeds the tile size,
  so images of the model size are unaffected);
- TF32 matmuls on CUDA when the model runs in fp32.

Precision (bf16/fp16 autocast) is chosen per run by :func:`medm2g_cli.inference.runtime.autocast`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _diffusers_modules(model: nn.Module, prefixes: tuple[str, ...]) -> list[tuple[str, Any]]:
    parts = getattr(model, "parts", {})
    return [(n, m) for n, m in parts.items() if n.startswith(prefixes)]


def use_sdpa(model: nn.Module) -> int:
    """Put PyTorch SDPA attention (``AttnProcessor2_0``) on every diffusers UNet/VAE; returns how many."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    n = 0
    for _, m in _diffusers_modules(model, ("unet_", "vae_")):
        if hasattr(m, "set_attn_processor") and getattr(m, "attn_processors", None):
            m.set_attn_processor(AttnProcessor2_0())
            n += 1
    return n


def use_bmm_attention(model: nn.Module) -> int:
    """Put the bmm-based ``AttnProcessor`` on every diffusers UNet/VAE (for FLOP counting only:
    torch's FLOP counter does not see SDPA on CPU, performance.md section 1)."""
    from diffusers.models.attention_processor import AttnProcessor

    n = 0
    for _, m in _diffusers_modules(model, ("unet_", "vae_")):
        if hasattr(m, "set_attn_processor") and getattr(m, "attn_processors", None):
            m.set_attn_processor(AttnProcessor())
            n += 1
    return n


def optimize_for_inference(
    model: Any,
    *,
    channels_last: bool | None = None,
    compile: bool = False,  # noqa: A002 - the CLI option is --compile
    compile_mode: str | None = None,
    compile_backend: str = "inductor",
    vae_tiling: bool = False,
) -> Any:
    """Apply the speed options to ``model`` in place and return it (eval mode).

    ``channels_last=None`` means "on for CUDA". ``compile`` wraps each imaging UNet with
    ``torch.compile`` (``compile_mode`` e.g. ``"max-autotune"``; ``compile_backend="eager"``
    exercises the graph capture without code generation, used by tests). Parameter names and
    state dicts are unchanged (``nn.Module.compile`` compiles in place). Every option except
    ``vae_tiling`` keeps fp32 outputs equal up to floating-point rounding (tested).
    """
    model.eval()
    device = model.device
    use_sdpa(model)
    if channels_last is None:
        channels_last = device.type == "cuda"
    if channels_last:
        for _, m in _diffusers_modules(model, ("unet_", "vae_")):
            if not _is_flat(m):
                m.to(memory_format=torch.channels_last)
    if device.type == "cuda" and model.dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if vae_tiling:
        for _, m in _diffusers_modules(model, ("vae_",)):
            if hasattr(m, "enable_tiling"):
                # Tile at the model's own size: only larger images are tiled.
                size = int(model.image_size)
                m.enable_tiling()
                m.tile_sample_min_size = size
                m.tile_latent_min_size = size // (2 ** (len(m.config.block_out_channels) - 1))
    if compile:
        kwargs: dict[str, Any] = {"backend": compile_backend, "dynamic": False}
        if compile_mode is not None:
            kwargs["mode"] = compile_mode
        for name, m in _diffusers_modules(model, ("unet_",)):
            if name != "unet_text":
                m.compile(**kwargs)
    return model


def _is_flat(m: nn.Module) -> bool:
    # The text branch's flat UNet works on vectors; channels_last applies to 4-D convs only.
    return type(m).__name__ == "FlatUNet"
