"""Inference speed options applied to a loaded :class:`~medm2g_cli.engine.model.MedM2G` in place.

What is always on (no option needed), and where it lives:

- classifier-free guidance runs conditional and unconditional rows in ONE batched forward
  (:func:`~medm2g_cli.engine.sampling.guided_noise` / :func:`~medm2g_cli.engine.sampling.generate`);
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
  small CPU models it is not reliably faster), except the autoencoders' *encoders* on CPU, where
  it is on by default: demo model, 128 px, 1 thread, 0.048-0.054 s per image vs 0.07-0.12 s
  contiguous (the decoders gained nothing: 0.11 vs 0.10-0.12 s; issue 20);
- ``torch.compile`` of the UNets (opt-in: minutes of compile time, recompiles on a shape change);
- VAE tiling for images larger than the model size (opt-in; tiles are blended, so unlike every
  other option it is *not* exact — diffusers only tiles when the latent exceeds the tile size,
  so images of the model size are unaffected);
- TF32 matmuls on CUDA when the model runs in fp32;
- autoencoders run on at most ``vae_chunk`` images at a time (default: 4 on CPU, off on CUDA).
  On CPU the 128 px autoencoders are cache-bound: measured on the demo model (1 thread), decoding
  16 latents in one call cost 0.13-0.19 s per image, in chunks of 4 0.10-0.11 s, one at a time
  0.15-0.18 s; encoding 0.10-0.14 / 0.05-0.07 / 0.05-0.08 s (issue 20).

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
    vae_chunk: int | None = None,
    vae_dtype: torch.dtype | None = None,
) -> Any:
    """Apply the speed options to ``model`` in place and return it (eval mode).

    ``channels_last=None`` means "on for CUDA". ``compile`` wraps each imaging UNet with
    ``torch.compile`` (``compile_mode`` e.g. ``"max-autotune"``; ``compile_backend="eager"``
    exercises the graph capture without code generation, used by tests). Parameter names and
    state dicts are unchanged (``nn.Module.compile`` compiles in place). ``vae_chunk=None`` means
    4 on CPU, off elsewhere (0 = off). Every option except ``vae_tiling`` keeps fp32 outputs equal
    up to floating-point rounding (tested). ``vae_dtype`` (e.g. ``torch.bfloat16``) runs the image
    autoencoders under autocast to that dtype, returning fp32 (the caller's choice:
    :func:`medm2g_cli.inference.runtime.autoencoder_dtype`); None keeps them in the model's dtype.
    """
    model.eval()
    device = model.device
    use_sdpa(model)
    if channels_last is None:
        channels_last = device.type == "cuda"
        if device.type == "cpu":
            for _, m in _diffusers_modules(model, ("vae_",)):
                m.encoder.to(memory_format=torch.channels_last)
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
    chunk = (4 if device.type == "cpu" else 0) if vae_chunk is None else vae_chunk
    for _, m in _diffusers_modules(model, ("vae_",)):
        chunk_autoencoder(m, chunk, vae_dtype)  # chunk 0: the class's own (whole-batch) methods
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


def chunk_autoencoder(vae: Any, chunk: int, dtype: torch.dtype | None = None) -> None:
    """Make ``vae.encode``/``vae.decode`` (diffusers ``AutoencoderKL``) run on at most ``chunk``
    images per call, joining the results, and (``dtype``) under autocast to ``dtype`` with fp32
    results; idempotent (a new call replaces the previous chunk size and dtype)."""
    from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    vae.__dict__.pop("encode", None)  # undo an earlier chunking: back to the class's methods
    vae.__dict__.pop("decode", None)
    enc, dec = vae.encode, vae.decode
    if dtype is not None:
        enc, dec = _cast_autoencoder(vae, enc, dec, dtype)
        if chunk < 1:
            vae.encode, vae.decode = enc, dec
            return
    if chunk < 1:
        return

    def encode(x: torch.Tensor, return_dict: bool = True) -> Any:
        if x.shape[0] <= chunk:
            return enc(x, return_dict=return_dict)
        h = torch.cat([enc(x[i:i + chunk]).latent_dist.parameters for i in range(0, x.shape[0], chunk)])
        dist = DiagonalGaussianDistribution(h)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        if z.shape[0] <= chunk:
            return dec(z, return_dict=return_dict)
        x = torch.cat([dec(z[i:i + chunk]).sample for i in range(0, z.shape[0], chunk)])
        return DecoderOutput(sample=x) if return_dict else (x,)

    vae.encode, vae.decode = encode, decode


def _cast_autoencoder(vae: Any, enc: Any, dec: Any, dtype: torch.dtype) -> tuple[Any, Any]:
    """``enc``/``dec`` run under autocast to ``dtype`` on the autoencoder's device, results in fp32
    (the latents and images the rest of the pipeline sees keep their dtype)."""
    from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    device = next(vae.parameters()).device.type

    def encode(x: torch.Tensor, return_dict: bool = True) -> Any:
        with torch.autocast(device_type=device, dtype=dtype):
            h = enc(x).latent_dist.parameters
        dist = DiagonalGaussianDistribution(h.float())
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        with torch.autocast(device_type=device, dtype=dtype):
            x = dec(z).sample
        return DecoderOutput(sample=x.float()) if return_dict else (x.float(),)

    return encode, decode
