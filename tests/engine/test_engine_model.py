"""The MedM2G model on the tiny preset: every direction, seeding, guidance, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medm2g_cli.engine import Condition, MedM2G, SampleConfig, verify_folder
from medm2g_cli.errors import InputError, OutputExistsError, WeightsError

FAST = SampleConfig(steps=2)


@pytest.fixture(scope="module")
def model() -> MedM2G:
    torch.set_num_threads(1)
    return MedM2G.from_preset("tiny", seed=0).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 1, 32, 32, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def saved(model: MedM2G, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("target", ["xray", "ct", "mri", "t2"])
def test_text_to_image(model: MedM2G, target: str) -> None:
    out = model.generate(target, [Condition("text", ["Mild cardiomegaly.", "Normal study."])], num_samples=2,
                         sample=FAST)
    assert out.shape == (4, 1, 32, 32)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("source", ["xray", "ct", "mri"])
def test_image_to_text(model: MedM2G, images: torch.Tensor, source: str) -> None:
    reports = model.generate("text", [Condition(source, images)], sample=FAST, max_length=8)
    assert isinstance(reports, list) and len(reports) == 2 and all(isinstance(r, str) for r in reports)


@pytest.mark.parametrize(("source", "target"), [("mri", "ct"), ("ct", "mri"), ("t1", "flair")])
def test_translation_uses_source_anatomy(model: MedM2G, images: torch.Tensor, source: str, target: str) -> None:
    out = model.generate(target, [Condition(source, images)], sample=FAST)
    assert out.shape == (2, 1, 32, 32)
    # The source enters spatially (context tokens): another source image changes the output.
    other = model.generate(target, [Condition(source, images.flip(-1))], sample=FAST)
    assert not torch.equal(out, other)


def test_multi_contrast_t1_t2_to_pd(model: MedM2G, images: torch.Tensor) -> None:
    conds = [Condition("t1", images, 0.5), Condition("t2", images.flip(-2), 0.5)]
    out = model.generate("pd", conds, sample=FAST)
    assert out.shape == (2, 1, 32, 32)


def test_joint_xray_and_text(model: MedM2G) -> None:
    out = model.generate_joint(("xray", "text"), [Condition("text", ["Small left effusion."])], num_samples=2,
                               sample=FAST, max_length=8)
    assert out["xray"].shape == (2, 1, 32, 32)
    assert len(out["text"]) == 2
    lat = model.generate_joint(("xray", "text"), [], sample=FAST, decode=False)
    assert lat["xray"].shape == (1, 4, 8, 8) and lat["text"].shape == (1, 32)


def test_same_seed_same_output_and_slicing_independent(model: MedM2G) -> None:
    cond = [Condition("text", ["Right lower lobe opacity."])]
    s = SampleConfig(steps=3, seed=7)
    a = model.generate("ct", cond, num_samples=4, sample=s)
    b = model.generate("ct", cond, num_samples=4, sample=s, batch_size=1)
    assert torch.equal(a, b) or torch.allclose(a, b, atol=1e-5)
    assert torch.equal(a, model.generate("ct", cond, num_samples=4, sample=s))
    c = model.generate("ct", cond, num_samples=4, sample=SampleConfig(steps=3, seed=8))
    assert not torch.allclose(a, c)
    # DPM-Solver++ is deterministic given the initial noise
    d = SampleConfig(steps=3, sampler="dpm++", seed=7)
    assert torch.equal(model.generate("ct", cond, sample=d), model.generate("ct", cond, sample=d))


def test_guidance_one_is_conditional(model: MedM2G) -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        prompt = model.embed_text(["Cardiomegaly.", "Normal."])
        tokens = model.prompt_tokens("xray", prompt)
        null = model.null_tokens_like("xray", tokens, None)
        cond = model.predict_noise("xray", z, torch.tensor([500, 500]), tokens)
        assert torch.equal(model.guided_noise("xray", z, 500, tokens, null, 1.0), cond)
        # the batched path with the CFG formula at scale 1 gives the same prediction
        both = model.predict_noise("xray", torch.cat([z, z]), torch.tensor([500] * 4), torch.cat([null, tokens]))
        e_null, e_cond = both.chunk(2)
        torch.testing.assert_close(e_null + 1.0 * (e_cond - e_null), cond, atol=1e-5, rtol=1e-5)
        uncond = model.predict_noise("xray", z, torch.tensor([500, 500]), null)
        torch.testing.assert_close(model.guided_noise("xray", z, 500, tokens, null, 0.0), uncond, atol=1e-5, rtol=1e-5)


def test_null_condition_is_empty_text(model: MedM2G) -> None:
    with torch.no_grad():
        tokens = model.prompt_tokens("ct", None, batch=2)
        expected = model.parts["conditioner_ct"].prompt_token(model.embed_text([""]))
        torch.testing.assert_close(tokens[:, 0], expected.expand(2, -1))


def test_training_hooks(model: MedM2G, images: torch.Tensor) -> None:
    zc = model.encode_image(images, "ct").detach()
    zm = model.encode_image("mri", images).detach()
    prompt = model.embed_text(["a", "b"]).detach()
    # every row dropped: the null condition replaces prompt and context, nothing reaches the encoder
    model.diffusion_loss("mri", zm, prompt, cond_drop_prob=1.0, sources=[("ct", zc)]).backward()
    g0 = model.parts["context_encoder_ct"].proj.weight.grad
    assert g0 is None or not g0.any()
    assert model.parts["conditioner_mri"].null_context.grad.abs().sum() > 0
    loss = model.diffusion_loss("mri", zm, prompt, cond_drop_prob=0.0, contrast=["t1", "t2"], sources=[("ct", zc)])
    loss.backward()
    unet_grad = model.parts["unet_mri"].conv_in.weight.grad
    ctx_grad = model.parts["context_encoder_ct"].proj.weight.grad
    assert unet_grad is not None and unet_grad.abs().sum() > 0 and ctx_grad.abs().sum() > 0
    la, lb = model.cross_guided_loss(("text", model.encode_text(["a", "b"]).detach(), None), ("xray", zc.detach(), None),
                                     cond_drop_prob=0.0)
    (la + lb).backward()
    # the X-ray UNet attends to the text latent's tokens (the text UNet's output layer starts at
    # zero, so at initialisation no gradient flows back through it to the X-ray context)
    assert model.parts["context_encoder_text"].proj.weight.grad.abs().sum() > 0
    rec, kl = model.text_vae_loss(["No effusion.", "Mild cardiomegaly noted."])
    rec.backward()
    assert model.parts["text_vae"].heads.to_past.weight.grad.abs().sum() > 0  # latent reaches GPT-2 as past K/V
    r2, k2 = model.autoencoder_loss(images, "xray")
    assert r2.ndim == 0 and k2.ndim == 0
    model.zero_grad(set_to_none=True)
    stages = {s: model.trainable_parameters(s, ["text", "xray", "ct", "mri"])
              for s in ("autoencoders", "alignment", "diffusion", "multiflow")}
    assert set(stages["autoencoders"]) == {"text_vae", "vae_xray", "vae_ct", "vae_mri"}
    assert "text_encoder" not in stages["alignment"] and "image_encoder_mri" in stages["alignment"]
    assert all(n.startswith(("context_encoder", "conditioner", "unet_")) for n in stages["multiflow"])
    assert model.cross_guidance_parameters("ct") > 0


def test_errors(model: MedM2G, images: torch.Tensor) -> None:
    with pytest.raises(InputError):
        Condition("ct", torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="batch sizes"):
        model.generate("ct", [Condition("text", ["a", "b"]), Condition("mri", torch.zeros(3, 1, 32, 32))], sample=FAST)
    small = MedM2G.from_preset("tiny", modalities=("text", "xray"))
    with pytest.raises(WeightsError, match="no ct branch"):
        small.generate("ct", [], sample=FAST)


def test_concat_mode(images: torch.Tensor) -> None:
    m = MedM2G.from_preset("tiny", modalities=("ct", "mri"), conditioning="concat").eval()
    assert m.parts["unet_ct"].config.in_channels == 12
    out = m.generate("ct", [Condition("t1", images), Condition("t2", images)], sample=FAST)
    assert out.shape == (2, 1, 32, 32)
    loss = m.diffusion_loss("ct", m.encode_image("ct", images), None, sources=[("mri", m.encode_image("mri", images))])
    assert torch.isfinite(loss)


def test_save_load_identical(model: MedM2G, saved: Path) -> None:
    loaded = MedM2G.from_pretrained(saved)
    cond = [Condition("text", ["Left pleural effusion."])]
    assert torch.equal(model.generate("mri", cond, sample=FAST), loaded.generate("mri", cond, sample=FAST))
    img = model.generate("xray", cond, sample=FAST)
    assert model.generate("text", [Condition("xray", img)], sample=FAST, max_length=6) == \
        loaded.generate("text", [Condition("xray", img)], sample=FAST, max_length=6)
    meta = json.loads((saved / "medm2g.json").read_text())
    assert meta["modalities"] == ["text", "xray", "ct", "mri"] and meta["conditioning"] == "context"
    assert "unet_ct/diffusion_pytorch_model.safetensors" in meta["sha256"]
    assert not any(p.suffix in (".bin", ".pt", ".ckpt") for p in saved.rglob("*"))
    with pytest.raises(OutputExistsError):
        model.save_pretrained(saved)


def test_components_load_standalone(saved: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertModel, CLIPVisionModelWithProjection, GPT2LMHeadModel

    from medm2g_cli.engine.unet import FlatUNet

    assert UNet2DConditionModel.from_pretrained(saved / "unet_ct").config.cross_attention_dim == 32
    assert AutoencoderKL.from_pretrained(saved / "vae_mri").config.in_channels == 1
    assert CLIPVisionModelWithProjection.from_pretrained(saved / "image_encoder_xray").config.num_channels == 1
    BertModel.from_pretrained(saved / "text_vae/encoder")
    GPT2LMHeadModel.from_pretrained(saved / "text_vae/decoder")
    FlatUNet.from_pretrained(saved / "unet_text")


def test_tampered_and_pickled_folders_are_refused(saved: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    f = bad / "unet_xray" / "diffusion_pytorch_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    assert verify_folder(bad)["mismatched"] == ["unet_xray/diffusion_pytorch_model.safetensors"]
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        MedM2G.from_pretrained(bad)
    MedM2G.from_pretrained(bad, verify=False)  # --skip-verify

    pick = tmp_path / "pick"
    shutil.copytree(saved, pick)
    torch.save({"x": torch.zeros(1)}, pick / "unet_ct" / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsError, match="pickled"):
        MedM2G.from_pretrained(pick, verify=False)

    gone = tmp_path / "gone"
    shutil.copytree(saved, gone)
    shutil.rmtree(gone / "context_encoder_mri")
    with pytest.raises(WeightsError, match="context_encoder_mri"):
        MedM2G.from_pretrained(gone)
    with pytest.raises(WeightsError, match="not a medm2g model folder"):
        MedM2G.from_pretrained(tmp_path)


def test_inspect_counts_from_headers_match_modules(model: MedM2G, saved: Path) -> None:
    from medm2g_cli.engine import describe, parameter_counts

    info = describe(path=saved)
    assert info["parameters"] == parameter_counts(model)


def test_cfg_is_one_batched_forward_and_context_once(model: MedM2G, images: torch.Tensor) -> None:
    calls: dict[str, list[int]] = {"unet": [], "ctx": []}
    h1 = model.parts["unet_ct"].register_forward_hook(lambda m, a, k, o: calls["unet"].append(a[0].shape[0]),
                                                      with_kwargs=True)
    h2 = model.parts["context_encoder_mri"].register_forward_hook(lambda m, a, o: calls["ctx"].append(a[0].shape[0]))
    try:
        model.generate("ct", [Condition("mri", images)], sample=SampleConfig(steps=4, guidance=2.0))
    finally:
        h1.remove()
        h2.remove()
    assert calls["unet"] == [4] * 4  # 2 samples x (unconditional + conditional), one forward per step
    assert calls["ctx"] == [2]  # the source's context tokens are computed once, not per step


def test_prompt_scale_upgrade_keeps_function(model: MedM2G, tmp_path: Path) -> None:
    import math

    cond = model.parts["conditioner_ct"]
    assert cond.prompt_scale == pytest.approx(math.sqrt(model.config.encoders.embed_dim))
    p = model.embed_text(["cardiomegaly", "no finding"]).detach()
    with torch.no_grad():
        before = model.prompt_tokens("ct", p, batch=2)
        cond.set_prompt_scale(1.0)  # the convention of weights saved before the option
        assert model.upgrade_prompt_scale() == ["conditioner_ct"]
        torch.testing.assert_close(model.prompt_tokens("ct", p, batch=2), before, atol=1e-5, rtol=1e-5)
    assert model.upgrade_prompt_scale() == []
    # the scale travels with the component's config
    from medm2g_cli.engine.unet import Conditioner

    cond.save_pretrained(tmp_path / "c")
    assert Conditioner.from_pretrained(tmp_path / "c").prompt_scale == pytest.approx(cond.prompt_scale)


class _Oracle(torch.nn.Module):
    """Stands in for a UNet that predicts a given tensor exactly (the engine's conversion is under test)."""

    def __init__(self, out: torch.Tensor, config: object) -> None:
        super().__init__()
        self.out, self.config = out, config

    def forward(self, *args: object, **kwargs: object) -> object:
        return type("Out", (), {"sample": self.out})()


def test_v_prediction_branch(images: torch.Tensor, tmp_path: Path) -> None:
    """A v branch: the loss target is v and a perfect v turns into the true eps; the setting persists."""
    from medm2g_cli.config import model_preset
    from medm2g_cli.errors import ConfigError

    cfg = model_preset("tiny", modalities=("ct", "mri"), conditioning="concat")
    cfg.scheduler.v_prediction = ("ct",)
    m = MedM2G.from_config(cfg.validate(), seed=0).eval()
    assert m.predicts_v("ct") and not m.predicts_v("t1")
    with torch.no_grad():
        x0 = m.encode_image("ct", images)
        g = torch.Generator().manual_seed(3)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.tensor([50, 900])
        z_t = m.train_scheduler.add_noise(x0, noise, t)
        a = m.train_scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        real = m.parts["unet_ct"]
        m.parts["unet_ct"] = _Oracle(v, real.config)
        tokens = m.prompt_tokens("ct", None, None, [], batch=2)
        assert torch.allclose(m.predict_noise("ct", z_t, t, tokens), noise, atol=1e-4)
        assert float(m.diffusion_loss("ct", x0, None, cond_drop_prob=0.0, noise=noise, timesteps=t)) < 1e-8
        m.parts["unet_ct"] = _Oracle(noise, real.config)  # an eps-perfect output is not a perfect v
        assert float(m.diffusion_loss("ct", x0, None, cond_drop_prob=0.0, noise=noise, timesteps=t)) > 1e-2
        m.parts["unet_ct"] = real
    out = m.generate("ct", [Condition("t1", images)], sample=FAST)
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    m.save_pretrained(tmp_path / "v")
    assert MedM2G.from_pretrained(tmp_path / "v").config.scheduler.v_prediction == ("ct",)
    cfg.scheduler.v_prediction = ("xray",)
    with pytest.raises(ConfigError, match="v_prediction"):
        cfg.validate()
