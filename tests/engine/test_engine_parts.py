"""Component-level checks: tokenizer, text encoder pooling, text VAE, scale factors, mixing."""

from __future__ import annotations

import pytest
import torch

from medm2g_cli.engine import MedM2G, mix_conditions
from medm2g_cli.engine.tokenizers import train_tokenizer
from medm2g_cli.errors import ConfigError


@pytest.fixture(scope="module")
def model() -> MedM2G:
    torch.set_num_threads(1)
    return MedM2G.from_preset("tiny", modalities=("text", "ct"), seed=1).eval()


def test_trained_tokenizer_round_trips_and_avoids_legacy_eos() -> None:
    tok = train_tokenizer(["Small left pleural effusion.", "No pneumothorax."], vocab_size=400)
    ids = tok("Small effusion, 5 mm")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).strip() == "small effusion, 5 mm"  # lower-cased
    assert tok.eos_token_id != 2  # CLIP's legacy eos==2 pooling rule would pool at the wrong token


def test_text_embedding_is_normalised_and_padding_invariant(model: MedM2G) -> None:
    with torch.no_grad():
        both = model.embed_text(["effusion", "a much longer report about the heart and lungs"])
        alone = model.embed_text(["effusion"])
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-5)  # pooled at the end token, not padding


def test_text_vae_latent_conditions_decoder(model: MedM2G) -> None:
    tv = model.component("text_vae")
    ids = torch.tensor([[tv.dec_tokenizer.bos_token_id, 10, 11, 12]])
    z = torch.randn(1, model.config.text.latent_dim)
    with torch.no_grad():
        a, b = tv.logits(z, ids), tv.logits(-z, ids)
        saved = tv.heads.to_embed.weight.clone(), tv.heads.to_embed.bias.clone()
        tv.heads.to_embed.weight.zero_()
        tv.heads.to_embed.bias.zero_()
        c, d = tv.logits(z, ids), tv.logits(-z, ids)  # only the past key/value path left
        tv.heads.to_embed.weight.copy_(saved[0])
        tv.heads.to_embed.bias.copy_(saved[1])
    assert not torch.allclose(a, b) and not torch.allclose(c, d)
    texts = model.decode_text(model.encode_text(["no effusion"]), method="beam", num_beams=3, max_length=5)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_scale_factor_calibration(model: MedM2G) -> None:
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    f = model.calibrate_scale_factor("ct", x)
    with torch.no_grad():
        z = model.encode_image("ct", x)
    assert model.scale_factors["ct"] == f
    assert z.std().item() == pytest.approx(1.0, rel=1e-3)
    ft = model.calibrate_scale_factor("text", ["a", "b c", "effusion", "heart"])
    with torch.no_grad():
        assert model.encode_text(["a", "b c", "effusion", "heart"]).std().item() == pytest.approx(1.0, rel=1e-3)
    assert ft > 0
    model.scale_factors.update({"ct": 1.0, "text": 1.0})


def test_mix_conditions() -> None:
    a = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    torch.testing.assert_close(mix_conditions([a]), a)
    m = mix_conditions([a, b], [3.0, 1.0])
    torch.testing.assert_close(m, torch.nn.functional.normalize(0.75 * a + 0.25 * b, dim=-1))
    with pytest.raises(ConfigError):
        mix_conditions([a, b], [0.0, 0.0])
