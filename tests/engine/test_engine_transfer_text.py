"""Loaders of the text branch's pretrained weights (Table A3): a Versatile Diffusion text UNet and an
Optimus text VAE, each from a tiny random folder written in the public layout (diffusers'
``text_unet/``; Optimus' ``BertForLatentConnector`` / ``GPT2ForLatentConnector`` tensor names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medm2g_cli.errors import WeightsError

torch.set_num_threads(1)


def test_versatile_text_unet_loads_and_runs_behind_the_medm2g_interface(tmp_path: Path) -> None:
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    from medm2g_cli.engine.transfer import VersatileTextUNet, load_versatile_text_unet

    torch.manual_seed(3)
    ref = UNetFlatConditionModel(sample_size=1, in_channels=(32, 1, 1), out_channels=(32, 1, 1), block_out_channels=(16, 32),
                                 layers_per_block=1, down_block_types=("CrossAttnDownBlockFlat", "DownBlockFlat"),
                                 up_block_types=("UpBlockFlat", "CrossAttnUpBlockFlat"), cross_attention_dim=24,
                                 attention_head_dim=2, norm_num_groups=8).eval()
    ref.save_pretrained(tmp_path / "vd" / "text_unet")  # diffusers' own save: the public folder layout
    unet = VersatileTextUNet.from_unet(load_versatile_text_unet(tmp_path / "vd"))
    z, tokens, t = torch.randn(2, 32), torch.randn(2, 3, 24), torch.tensor([5, 700])
    with torch.no_grad():
        want = ref(z[:, :, None, None], t, encoder_hidden_states=tokens).sample.reshape(2, -1)
        got = unet(z, t, tokens)
    assert got.shape == (2, 32) and torch.equal(got, want)
    # refusals: a pickle-only folder, another model class
    (tmp_path / "pk" / "text_unet").mkdir(parents=True)
    (tmp_path / "pk" / "text_unet" / "config.json").write_text((tmp_path / "vd" / "text_unet" / "config.json").read_text())
    (tmp_path / "pk" / "text_unet" / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(WeightsError, match="no .safetensors"):
        load_versatile_text_unet(tmp_path / "pk")
    conf = json.loads((tmp_path / "vd" / "text_unet" / "config.json").read_text())
    (tmp_path / "vd" / "text_unet" / "config.json").write_text(json.dumps({**conf, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(WeightsError, match="not VD's text UNet"):
        load_versatile_text_unet(tmp_path / "vd")


def _optimus_folder(root: Path) -> dict[str, torch.Tensor]:
    """Random tiny Optimus checkpoints in the released tensor names, converted to safetensors."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    from medm2g_cli.engine.tokenizers import train_tokenizer

    torch.manual_seed(5)
    tok = train_tokenizer(vocab_size=300)
    bconf = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, pad_token_id=tok.pad_token_id)
    gconf = GPT2Config(vocab_size=len(tok), n_embd=24, n_layer=2, n_head=2, n_positions=80)
    bert, gpt2, nz = BertModel(bconf), GPT2LMHeadModel(gconf), 16
    enc = {f"bert.{k}": v for k, v in bert.state_dict().items()}
    enc["linear.weight"] = torch.randn(2 * nz, 32)  # BertForLatentConnector.linear (bias=False)
    dec = {k: v for k, v in gpt2.state_dict().items() if k != "lm_head.weight"}  # tied: released files omit it
    dec["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 80, 80))  # the old mask buffer
    dec["transformer.linear.weight"] = torch.randn(2 * 24, nz)  # latent -> past K/V of each layer
    dec["transformer.linear_emb.weight"] = torch.randn(24, nz)  # latent -> embedding
    for sub, state, conf in (("encoder", enc, bconf), ("decoder", dec, gconf)):
        (root / sub).mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(root / sub / "model.safetensors"))
        (root / sub / "config.json").write_text(conf.to_json_string())
        tok.save_pretrained(root / sub)
    return {**{f"enc:{k}": v for k, v in enc.items()}, **{f"dec:{k}": v for k, v in dec.items()}}


def test_optimus_maps_onto_the_text_vae(tmp_path: Path) -> None:
    from medm2g_cli.engine.transfer import load_optimus

    ref = _optimus_folder(tmp_path / "optimus")
    bert, gpt2, heads = load_optimus(tmp_path / "optimus")
    assert torch.equal(heads.to_moments.weight, ref["enc:linear.weight"]) and not heads.to_moments.bias.any()
    assert torch.equal(heads.to_past.weight, ref["dec:transformer.linear.weight"]) and not heads.to_past.bias.any()
    assert torch.equal(heads.to_embed.weight, ref["dec:transformer.linear_emb.weight"])
    assert torch.equal(bert.embeddings.word_embeddings.weight, ref["enc:bert.embeddings.word_embeddings.weight"])
    assert torch.equal(gpt2.transformer.h[1].mlp.c_fc.weight, ref["dec:transformer.h.1.mlp.c_fc.weight"])
    assert torch.equal(gpt2.lm_head.weight, ref["dec:transformer.wte.weight"])
    # Optimus' posterior: pooled BERT output -> linear -> (mean, logvar)
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        pooled = bert(input_ids=ids).pooler_output
        mean = heads.to_moments(pooled).chunk(2, dim=-1)[0]
    assert torch.allclose(mean, pooled @ ref["enc:linear.weight"].T[:, :16], atol=1e-6)
    # refusals: a pickle-only folder, a connector missing
    (tmp_path / "optimus" / "decoder" / "model.safetensors").unlink()
    (tmp_path / "optimus" / "decoder" / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(WeightsError, match="no .safetensors weights"):
        load_optimus(tmp_path / "optimus")
    with pytest.raises(WeightsError, match="lacks decoder/"):
        (tmp_path / "half" / "encoder").mkdir(parents=True)
        load_optimus(tmp_path / "half")


def test_weights_init_takes_the_whole_text_vae_from_optimus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medm2g_cli.engine import MedM2G
    from medm2g_cli.main import run

    ref = _optimus_folder(tmp_path / "optimus")
    try:
        run(["weights", "init", "--preset", "tiny", "--optimus", str(tmp_path / "optimus"), "-o", str(tmp_path / "m")])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    model = MedM2G.from_pretrained(tmp_path / "m")
    assert model.config.text.latent_dim == 16 and model.config.text.decoder_layers == 2
    tv = model.component("text_vae")
    assert torch.equal(tv.heads.to_past.weight, ref["dec:transformer.linear.weight"])
    assert torch.equal(tv.encoder.encoder.layer[0].output.dense.weight, ref["enc:bert.encoder.layer.0.output.dense.weight"])
    assert model.encode_text(["small left effusion"]).shape == (1, 16)


def test_weights_init_takes_the_text_diffuser_from_versatile_diffusion(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--versatile: VD's text UNet becomes unet_text, survives save/load, and trains (text diffusion loss)."""
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    from medm2g_cli.engine import MedM2G
    from medm2g_cli.main import run
    from medm2g_cli.training.objectives import diffusion_loss

    torch.manual_seed(4)
    ref = UNetFlatConditionModel(sample_size=1, in_channels=(32, 1, 1), out_channels=(32, 1, 1), block_out_channels=(16, 32),
                                 layers_per_block=1, down_block_types=("CrossAttnDownBlockFlat", "DownBlockFlat"),
                                 up_block_types=("UpBlockFlat", "CrossAttnUpBlockFlat"), cross_attention_dim=32,
                                 attention_head_dim=2, norm_num_groups=8).eval()
    ref.save_pretrained(tmp_path / "vd" / "text_unet")
    try:
        run(["weights", "init", "--preset", "tiny", "--versatile", str(tmp_path / "vd"), "-o", str(tmp_path / "m")])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    model = MedM2G.from_pretrained(tmp_path / "m")
    unet = model.component("unet_text")
    assert type(unet).__name__ == "VersatileTextUNet"
    z, tokens, t = torch.randn(2, 32), torch.randn(2, 3, 32), torch.tensor([3, 900])
    with torch.no_grad():
        want = ref(z[:, :, None, None], t, encoder_hidden_states=tokens).sample.reshape(2, -1)
        assert torch.allclose(unet(z, t, tokens), want, atol=1e-6)
    model.train()
    loss = diffusion_loss(model, "text", torch.randn(2, 32), model.embed_text(["a", "b"]).detach())
    loss.backward()
    assert any(p.grad is not None for p in unet.parameters())
    # widths that do not fit the model are refused with one line
    try:
        run(["weights", "init", "--preset", "small", "--versatile", str(tmp_path / "vd"), "-o", str(tmp_path / "bad")])
    except SystemExit as exc:
        assert exc.code == 2
    assert "Versatile Diffusion text UNet" in capsys.readouterr().err and not (tmp_path / "bad").exists()
