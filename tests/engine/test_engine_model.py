"""The MedM2G module on the tiny preset: conditioning, errors, save/load, v-prediction.

Sampling (every direction, seeding, guidance) is tested in ``test_engine_sampling.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medm2g_cli.engine import Condition, MedM2G, SampleConfig, generate, verify_folder
from medm2g_cli.errors import InputError, OutputExistsError, WeightsError
from medm2g_cli.training.objectives import diffusion_loss

FAST = SampleConfig(steps=2)


@pytest.fixture(scope="module")
def saved(model: MedM2G, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    model.save_pretrained(path)
    return path


def test_null_condition_is_empty_text(model: MedM2G) -> None:
    with torch.no_grad():
        tokens = model.prompt_tokens("ct", None, batch=2)
        expected = model.parts["conditioner_ct"].prompt_token(model.embed_text([""]))
        torch.testing.assert_close(tokens[:, 0], expected.expand(2, -1))


def test_errors(model: MedM2G, images: torch.Tensor) -> None:
    with pytest.raises(InputError):
        Condition("ct", torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="batch sizes"):
        generate(model, "ct", [Condition("text", ["a", "b"]), Condition("mri", torch.zeros(3, 1, 32, 32))], sample=FAST)
    small = MedM2G.from_preset("tiny", modalities=("text", "xray"))
    with pytest.raises(WeightsError, match="no ct branch"):
        generate(small, "ct", [], sample=FAST)


def test_concat_mode(images: torch.Tensor) -> None:
    m = MedM2G.from_preset("tiny", modalities=("ct", "mri"), conditioning="concat").eval()
    assert m.parts["unet_ct"].config.in_channels == 12
    out = generate(m, "ct", [Condition("t1", images), Condition("t2", images)], sample=FAST)
    assert out.shape == (2, 1, 32, 32)
    loss = diffusion_loss(m, "ct", m.encode_image("ct", images), None,
                          sources=[("mri", m.encode_image("mri", images))])
    assert torch.isfinite(loss)


def test_save_load_identical(model: MedM2G, saved: Path) -> None:
    loaded = MedM2G.from_pretrained(saved)
    cond = [Condition("text", ["Left pleural effusion."])]
    assert torch.equal(generate(model, "mri", cond, sample=FAST), generate(loaded, "mri", cond, sample=FAST))
    img = generate(model, "xray", cond, sample=FAST)
    assert generate(model, "text", [Condition("xray", img)], sample=FAST, max_length=6) == \
        generate(loaded, "text", [Condition("xray", img)], sample=FAST, max_length=6)
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
        assert float(diffusion_loss(m, "ct", x0, None, cond_drop_prob=0.0, noise=noise, timesteps=t)) < 1e-8
        m.parts["unet_ct"] = _Oracle(noise, real.config)  # an eps-perfect output is not a perfect v
        assert float(diffusion_loss(m, "ct", x0, None, cond_drop_prob=0.0, noise=noise, timesteps=t)) > 1e-2
        m.parts["unet_ct"] = real
    out = generate(m, "ct", [Condition("t1", images)], sample=FAST)
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    m.save_pretrained(tmp_path / "v")
    assert MedM2G.from_pretrained(tmp_path / "v").config.scheduler.v_prediction == ("ct",)
    cfg.scheduler.v_prediction = ("xray",)
    with pytest.raises(ConfigError, match="v_prediction"):
        cfg.validate()
