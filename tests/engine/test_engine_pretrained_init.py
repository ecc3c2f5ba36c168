"""Initialisation from local pretrained folders (SD-1.5 diffusers layout, CLIP, BERT, GPT-2), made
in the test from random tiny configs with the libraries' own save_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medm2g_cli.engine import MedM2G, generate
from medm2g_cli.engine.tokenizers import train_tokenizer
from medm2g_cli.errors import WeightsError
from medm2g_cli.main import run


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(123)
    root = tmp_path_factory.mktemp("pretrained")
    sd = root / "sd15"
    UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
    ).save_pretrained(sd / "unet")
    AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=16,
    ).save_pretrained(sd / "vae")
    tok = train_tokenizer(vocab_size=300)
    clip_conf = CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 40, "eos_token_id": tok.eos_token_id,
                     "bos_token_id": tok.bos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=24,
    )
    CLIPModel(clip_conf).save_pretrained(root / "clip")
    tok.save_pretrained(root / "clip")
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    return {"root": root, "sd15": sd, "clip": root / "clip", "bert": root / "bert", "gpt2": root / "gpt2"}


def test_init_from_sd15_clip_bert_gpt2(pretrained: dict[str, Path], tmp_path: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertModel, CLIPModel, GPT2LMHeadModel

    out = tmp_path / "model"
    try:
        run(["weights", "init", "--preset", "tiny", "-o", str(out), "--sd15", str(pretrained["sd15"]),
             "--clip", str(pretrained["clip"]), "--bert", str(pretrained["bert"]), "--gpt2", str(pretrained["gpt2"])])
    except SystemExit as ex:
        assert ex.code in (0, None)
    model = MedM2G.from_pretrained(out)
    unet = UNet2DConditionModel.from_pretrained(pretrained["sd15"] / "unet").state_dict()
    vae = AutoencoderKL.from_pretrained(pretrained["sd15"] / "vae").state_dict()
    assert model.image_size == 16 and model.config.cross_attention_dim == 32
    for m in ("xray", "ct", "mri"):
        got_u = model.component(f"unet_{m}").state_dict()
        assert got_u.keys() == unet.keys()
        for k, v in unet.items():
            assert torch.equal(got_u[k], v), k
        got_v = model.component(f"vae_{m}").state_dict()
        assert got_v.keys() == vae.keys()
        for k, v in vae.items():
            if k == "encoder.conv_in.weight":  # RGB -> 1 channel: sum over input channels (function kept)
                torch.testing.assert_close(got_v[k], v.sum(1, keepdim=True))
            elif k in ("decoder.conv_out.weight", "decoder.conv_out.bias"):  # mean over output channels
                torch.testing.assert_close(got_v[k], v.mean(0, keepdim=True))
            else:
                assert torch.equal(got_v[k], v), k
    clip = CLIPModel.from_pretrained(pretrained["clip"]).state_dict()
    text = model.component("text_encoder").state_dict()
    assert all(torch.equal(text[k], clip[k]) for k in text)
    vision = model.component("image_encoder_ct").state_dict()
    # the patch embedding and position table carry CLIP's pixel normalisation (tests/engine/test_engine_transfer.py)
    folded = ("vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.position_embedding.weight")
    for k, v in vision.items():
        if k not in folded:
            torch.testing.assert_close(v, clip[k])
    bert = BertModel.from_pretrained(pretrained["bert"]).state_dict()
    enc = model.component("text_vae").encoder.state_dict()
    assert all(torch.equal(enc[k], bert[k]) for k in bert)
    gpt = GPT2LMHeadModel.from_pretrained(pretrained["gpt2"]).state_dict()
    dec = model.component("text_vae").decoder.state_dict()
    assert all(torch.equal(dec[k], gpt[k]) for k in gpt)
    # the model still runs end to end at the SD-derived size
    img = generate(model, "xray", [], sample=__import__("medm2g_cli.config").config.SampleConfig(steps=2))
    assert img.shape == (1, 1, 16, 16)


def test_concat_mode_extends_conv_in_with_zeros(pretrained: dict[str, Path]) -> None:
    from diffusers import UNet2DConditionModel

    from medm2g_cli.config import model_preset
    from medm2g_cli.engine import init_from_pretrained

    model = init_from_pretrained(model_preset("tiny", modalities=("ct", "mri"), conditioning="concat"),
                                 sd15=pretrained["sd15"])
    ref = UNet2DConditionModel.from_pretrained(pretrained["sd15"] / "unet").conv_in.weight
    w = model.component("unet_ct").conv_in.weight
    assert torch.equal(w[:, :4], ref) and not w[:, 4:].any()


def test_missing_or_mismatched_folder(pretrained: dict[str, Path], tmp_path: Path) -> None:
    from medm2g_cli.config import model_preset
    from medm2g_cli.engine import init_from_pretrained

    half = tmp_path / "half"
    (half / "unet").mkdir(parents=True)
    (half / "unet" / "config.json").write_text((pretrained["sd15"] / "unet" / "config.json").read_text())
    with pytest.raises(WeightsError, match="vae/config.json"):
        init_from_pretrained(model_preset("tiny"), sd15=half)
    with pytest.raises(WeightsError, match="does not exist"):
        init_from_pretrained(model_preset("tiny"), clip=tmp_path / "nope")
    with pytest.raises(WeightsError, match="not GPT-2"):  # a BERT folder given as GPT-2
        init_from_pretrained(model_preset("tiny"), gpt2=pretrained["bert"])
    ckpt = tmp_path / "v1-5.safetensors"
    ckpt.write_bytes(b"\0")
    with pytest.raises(WeightsError, match="is a file"):
        init_from_pretrained(model_preset("tiny"), sd15=ckpt)
