"""Model configs and presets."""

from __future__ import annotations

import json

import pytest

from medm2g_cli.config import PRESETS, ModelConfig, SampleConfig, model_preset
from medm2g_cli.errors import ConfigError


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_json_round_trip(name: str) -> None:
    cfg = model_preset(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_full_preset_is_table_a3() -> None:
    cfg = model_preset("full")
    assert cfg.image.block_out_channels == (320, 640, 1280, 1280)  # 320 x (1, 2, 4, 4)
    assert cfg.image.attention_levels == (True, True, True, False)  # latent 64/32/16
    assert cfg.image.num_heads == 8 and cfg.cross_attention_dim == 768
    # prompt encoders: ViT-B (Table A10), ViT-L/H selectable
    assert (cfg.encoders.scale, cfg.encoders.embed_dim, cfg.encoders.vision_hidden) == ("vit-b", 512, 768)
    large = model_preset("full", **{"encoders.scale": "vit-l"})
    assert (large.encoders.embed_dim, large.encoders.vision_layers, large.encoders.vision_patch_size) == (768, 24, 14)
    assert model_preset("full", **{"encoders.scale": "vit-h"}).encoders.vision_hidden == 1280
    assert (cfg.image.latent_channels, cfg.image.latent_size) == (4, 64)
    assert cfg.text.latent_dim == 768 and cfg.text.unet_channels == 320 and cfg.text.unet_mult == (1, 2, 4, 4)
    s = cfg.scheduler
    assert (s.num_train_timesteps, s.beta_start, s.beta_end, s.beta_schedule) == (1000, 0.00085, 0.012, "scaled_linear")
    assert SampleConfig() == SampleConfig(steps=50, eta=1.0, guidance=2.0, sampler="ddim", seed=0)


def test_small_preset_latents() -> None:
    cfg = model_preset("small")
    assert (cfg.image.image_size, cfg.image.latent_channels, cfg.image.latent_size) == (64, 4, 16)


def test_overrides_and_errors() -> None:
    cfg = model_preset("tiny", modalities=("xray", "text"), conditioning="concat", **{"image.image_size": 64})
    assert cfg.modalities == ("text", "xray") and cfg.conditioning == "concat" and cfg.image.image_size == 64
    with pytest.raises(ConfigError, match="unknown preset"):
        model_preset("huge")
    with pytest.raises(ConfigError, match="unknown config field"):
        model_preset("tiny", nonsense=1)
    with pytest.raises(ConfigError, match="unknown modality"):
        model_preset("tiny", modalities=("pet",))
    bad = model_preset("tiny").to_dict()
    bad["image"]["oops"] = 1
    with pytest.raises(ConfigError, match="oops"):
        ModelConfig.from_dict(bad)
    with pytest.raises(ConfigError):
        SampleConfig(sampler="euler").validate()


def test_head_channels_reading_of_table_a3() -> None:
    """``image.head_channels`` (Table A3 "head channels 32"): heads per level = width / head_channels,
    with the same parameters as the default (SD-1.5's fixed number of heads), so SD weights still load."""
    from medm2g_cli.engine.unet import build_image_unet

    default, per_width = model_preset("tiny"), model_preset("tiny", **{"image.head_channels": 8})
    a, b = build_image_unet(default), build_image_unet(per_width)
    assert a.config.attention_head_dim == 2 and tuple(b.config.attention_head_dim) == (2, 4)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    with pytest.raises(ConfigError, match="head_channels 24 does not divide"):
        model_preset("tiny", **{"image.head_channels": 24})
