"""Batching and every inference speed option keep fp32 outputs equal up to floating-point rounding.

Tiny preset, random weights, few steps. Each comparison runs the same seeds with and without the
option; an option that changed the maths (wrong guidance halves, a per-step context, a mis-seeded
batch, a wrong orientation write) would differ by far more than the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medm2g_cli.config import SampleConfig
from medm2g_cli.engine import Condition, MedM2G, generate, speed
from medm2g_cli.engine.sampling import guidance_batch, guided_noise

ATOL = 2e-5


@pytest.fixture(scope="module")
def model() -> MedM2G:
    torch.set_num_threads(1)
    return MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri")).eval()


@pytest.fixture(scope="module")
def source() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand((4, 1, 32, 32), generator=g) * 2 - 1


def _gen(model: MedM2G, src: torch.Tensor, **kw) -> torch.Tensor:
    sample = SampleConfig(steps=3, guidance=2.0, eta=1.0, seed=7)
    return generate(model, "ct", [Condition("mri", src)], sample=sample, **kw)  # type: ignore[return-value]


def _fresh(**overrides) -> MedM2G:
    return MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri"), **overrides).eval()


def test_slice_batch_size_does_not_change_outputs(model: MedM2G, source: torch.Tensor) -> None:
    ref = _gen(model, source, batch_size=1)
    for bs in (2, 4):
        out = _gen(model, source, batch_size=bs)
        assert torch.allclose(out, ref, atol=ATOL), (bs, (out - ref).abs().max())
    assert out.is_inference()  # sampling ran under torch.inference_mode
    assert ref.abs().max() > 0.01 and not torch.allclose(ref[0], ref[1], atol=1e-3)  # a non-trivial output


def test_guidance_in_one_batched_forward_equals_two_forwards(model: MedM2G) -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn((3, 4, 8, 8), generator=g)
    tokens = torch.randn((3, 6, 32), generator=g)
    null = torch.randn((3, 6, 32), generator=g)
    t = torch.tensor(500)
    with torch.inference_mode():
        e_c = model.predict_noise("ct", z, t.expand(3), tokens)
        e_u = model.predict_noise("ct", z, t.expand(3), null)
        two = e_u + 2.5 * (e_c - e_u)
        one = guided_noise(model, "ct", z, t, *guidance_batch(tokens, null), 2.5)
    assert torch.allclose(one, two, atol=ATOL)
    assert not torch.allclose(e_c, e_u, atol=1e-3)  # the halves really differ


def test_context_tokens_computed_once_per_slice_batch(model: MedM2G, source: torch.Tensor) -> None:
    calls: list[int] = []
    hook = model.parts["context_encoder_mri"].register_forward_hook(lambda m, a, o: calls.append(int(o.shape[0])))
    try:
        _gen(model, source, batch_size=4)  # 3 steps x 2 guidance halves: still one context pass
    finally:
        hook.remove()
    assert calls == [4]


def test_channels_last_sdpa_and_compile_keep_outputs(source: torch.Tensor) -> None:
    base = _fresh()
    ref = _gen(base, source)
    # bmm attention (the FLOP-counting path) vs SDPA: the same maths
    speed.use_bmm_attention(base)
    assert torch.allclose(_gen(base, source), ref, atol=ATOL)
    opt = speed.optimize_for_inference(_fresh(), channels_last=True)
    unet = opt.parts["unet_ct"]
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    proc = next(iter(unet.attn_processors.values()))
    assert type(proc).__name__ == "AttnProcessor2_0"
    assert torch.allclose(_gen(opt, source), ref, atol=ATOL)
    # torch.compile graph capture ("eager" backend: no minutes-long code generation in tests)
    comp = speed.optimize_for_inference(_fresh(), compile=True, compile_backend="eager")
    assert comp.parts["unet_ct"]._compiled_call_impl is not None
    assert torch.allclose(_gen(comp, source), ref, atol=ATOL)
    # state dict names are unchanged by compiling in place
    assert set(comp.state_dict()) == set(base.state_dict())


def test_vae_tiling_is_a_noop_at_model_size(source: torch.Tensor) -> None:
    ref = _gen(_fresh(), source)
    tiled = speed.optimize_for_inference(_fresh(), vae_tiling=True)
    assert tiled.parts["vae_ct"].use_tiling
    assert torch.allclose(_gen(tiled, source), ref, atol=ATOL)


def test_bf16_autocast_stays_close(model: MedM2G, source: torch.Tensor) -> None:
    ref = _gen(model, source)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _gen(model, source)
    # bf16 is not an fp32 option: only a sanity bound (outputs in [-1, 1])
    assert float((out.float() - ref).abs().mean()) < 0.1


def test_translate_streaming_is_batch_and_orientation_invariant() -> None:
    from medm2g_cli.inference.pipeline import Source, translate_sources
    from medm2g_cli.io.volume import Volume

    m = _fresh()
    rng = np.random.default_rng(0)
    arr = rng.normal(40, 300, size=(20, 24, 5)).astype(np.float32)
    aff = np.diag([1.0, 1.2, 2.0, 1.0])
    vol = Volume(arr.copy(), aff, modality="ct")

    def run(v: Volume, bs: int) -> np.ndarray:
        res = translate_sources(m, [Source("ct", v)], "mri", sample=SampleConfig(steps=2, seed=3), batch_size=bs)
        return res.mean.array

    ref = run(vol, 5)
    assert np.array_equal(vol.array, arr)  # input untouched
    assert ref.shape == arr.shape and np.isfinite(ref).all()
    np.testing.assert_allclose(run(vol, 2), ref, rtol=1e-5, atol=1e-3)  # arbitrary units (0..1000): fp32 tolerance
    # the same volume stored with a flipped first axis (LAS): the output is flipped the same way
    flip = aff.copy()
    flip[0, 0], flip[0, 3] = -1.0, 19.0
    out = run(Volume(arr[::-1].copy(), flip, modality="ct"), 3)
    np.testing.assert_allclose(out[::-1], ref, rtol=1e-5, atol=1e-3)


def test_auto_batch_size_cpu() -> None:
    from medm2g_cli.inference.runtime import auto_batch_size

    cpu = torch.device("cpu")
    assert auto_batch_size(cpu, 512) == 2  # SD-1.5 size: flat beyond batch 2 with guidance
    assert auto_batch_size(cpu, 128) == 8  # demo model: overhead-bound, 16 rows per forward (issue 20)
    assert auto_batch_size(cpu, 128, guidance=False) == 16
    assert auto_batch_size(cpu, 64) == 16


def test_chunked_autoencoders_equal_whole_batches(source: torch.Tensor) -> None:
    """CPU default (issue 20): autoencoders run 4 images at a time, with the same latents and images."""
    m = _fresh()
    x = torch.cat([source, source.flip(-1), source.flip(-2)])  # 12 images: 3 chunks of 4
    z_in = torch.randn(12, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    seen: list[int] = []
    m.parts["vae_ct"].decoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    with torch.inference_mode():
        z_ref, img_ref = m.encode_image("mri", x), m.decode_image("ct", z_in)
        speed.optimize_for_inference(m)  # on CPU: vae_chunk 4
        z, img = m.encode_image("mri", x), m.decode_image("ct", z_in)
    assert seen == [12, 4, 4, 4]
    assert torch.allclose(z, z_ref, atol=ATOL) and torch.allclose(img, img_ref, atol=ATOL)
    speed.optimize_for_inference(m, vae_chunk=0)  # off again: the class's own methods
    assert "decode" not in vars(m.parts["vae_ct"]) and "encode" not in vars(m.parts["vae_mri"])


@pytest.mark.parametrize("chunk", [4, 0])
def test_bf16_autoencoders_run_in_bf16_and_return_fp32_close_to_fp32(source: torch.Tensor, chunk: int) -> None:
    """``--precision auto`` on CPUs with native bf16 (issue 20): the autoencoders run under bf16
    autocast, chunked or not; latents and images come back fp32 and close to the fp32 ones."""
    m = _fresh()
    x = torch.cat([source, source.flip(-1)])
    z_in = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    dtypes: list[torch.dtype] = []
    m.parts["vae_ct"].decoder.conv_in.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
    with torch.inference_mode():
        z_ref, img_ref = m.encode_image("mri", x), m.decode_image("ct", z_in)
        speed.optimize_for_inference(m, vae_chunk=chunk, vae_dtype=torch.bfloat16)
        z, img = m.encode_image("mri", x), m.decode_image("ct", z_in)
    assert dtypes[0] == torch.float32 and set(dtypes[1:]) == {torch.bfloat16}  # really cast, every chunk
    assert z.dtype == img.dtype == torch.float32
    assert not torch.equal(img, img_ref)
    # bf16 keeps 8 mantissa bits (0.4 % per op): on the tiny random AE the mean error stays under
    # 1 % and the worst pixel under 6 % of the range (the demo model: +0.02 dB PSNR, issue 20)
    for new, ref in ((img, img_ref), (z, z_ref)):
        scale = float(ref.abs().max())
        assert float((new - ref).abs().mean()) < 0.01 * scale and float((new - ref).abs().max()) < 0.06 * scale
    speed.optimize_for_inference(m, vae_chunk=chunk)  # no dtype again: fp32 as before
    with torch.inference_mode():
        assert torch.allclose(m.decode_image("ct", z_in), img_ref, atol=ATOL)


def test_precision_auto_casts_autoencoders_only_where_the_cpu_computes_bf16() -> None:
    from medm2g_cli.inference.runtime import autocast, autoencoder_dtype, cpu_computes_bf16

    cpu = torch.device("cpu")
    assert autoencoder_dtype(cpu, "auto") == (torch.bfloat16 if cpu_computes_bf16() else None)
    for precision in ("fp32", "bf16", "fp16"):  # explicit precisions keep their meaning
        assert autoencoder_dtype(cpu, precision) is None
    assert autoencoder_dtype(torch.device("cuda"), "auto") is None
    assert not torch.is_autocast_enabled() and isinstance(autocast(cpu, "auto"), type(autocast(cpu, "fp32")))
