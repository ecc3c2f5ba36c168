"""Optimus-style text VAE: a BERT encoder to a Gaussian latent and a GPT-2 decoder that reads the
latent twice — as a one-slot past key/value in every layer and added to every token embedding
(CoDi/VD ``GPT2ForLatentConnector``, method.md section 2.1).

Saved as ``text_vae/encoder`` (``BertModel``), ``text_vae/decoder`` (``GPT2LMHeadModel``) and
``text_vae/latent`` (the three latent projections, a diffusers ``ModelMixin``), each loadable alone.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F  # noqa: N812
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import BertConfig, BertModel, DynamicCache, GPT2Config, GPT2LMHeadModel

from ..config import TextBranchConfig

_CACHE_KW = "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters


class LatentHeads(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: ModelMixin/ConfigMixin type config_name differently
    """The latent connectors: pooled encoder state -> (mean, logvar); z -> past K/V; z -> embedding."""

    @register_to_config
    def __init__(self, encoder_hidden: int = 768, latent_dim: int = 768, decoder_hidden: int = 768,
                 decoder_layers: int = 12) -> None:
        super().__init__()
        self.to_moments = nn.Linear(encoder_hidden, 2 * latent_dim)
        self.to_past = nn.Linear(latent_dim, decoder_layers * decoder_hidden)
        self.to_embed = nn.Linear(latent_dim, decoder_hidden)


def build_bert(cfg: TextBranchConfig, vocab_size: int, pad_id: int) -> BertModel:
    """A freshly initialised BERT-style encoder."""
    return BertModel(BertConfig(
        vocab_size=vocab_size, hidden_size=cfg.encoder_hidden, num_hidden_layers=cfg.encoder_layers,
        num_attention_heads=cfg.encoder_heads, intermediate_size=cfg.encoder_hidden * 4,
        max_position_embeddings=max(512, cfg.max_length + 2), pad_token_id=pad_id,
    ))


def build_gpt2(cfg: TextBranchConfig, vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2-style decoder."""
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab_size, n_embd=cfg.decoder_hidden, n_layer=cfg.decoder_layers, n_head=cfg.decoder_heads,
        n_positions=max(1024, cfg.max_length + 2), bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
    ))


class TextVAE(nn.Module):
    """Encoder, decoder, latent heads and their two tokenizers (encoder side and decoder side)."""

    def __init__(self, encoder: BertModel, decoder: GPT2LMHeadModel, heads: LatentHeads,
                 enc_tokenizer, dec_tokenizer, max_length: int = 60, kl_beta: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.heads = heads
        self.enc_tokenizer = enc_tokenizer
        self.dec_tokenizer = dec_tokenizer
        self.max_length = max_length
        self.kl_beta = kl_beta

    @property
    def latent_dim(self) -> int:
        """Width of the text latent."""
        return self.heads.config["latent_dim"]

    def _device(self) -> torch.device:
        return self.heads.to_moments.weight.device

    # -- encoder -----------------------------------------------------------------------------

    def moments(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mean, logvar) [B, D] of ``texts``."""
        n = (max_length or self.max_length) + 2
        enc = self.enc_tokenizer([t.lower() for t in texts], padding=True, truncation=True, max_length=n,
                                 return_tensors="pt").to(self._device())
        out = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]
        mean, logvar = self.heads.to_moments(pooled).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    # -- decoder -----------------------------------------------------------------------------

    def _cache(self, z: torch.Tensor) -> DynamicCache:
        """One past slot per layer holding the projected latent as both key and value."""
        conf = self.decoder.config
        heads, hidden = conf.n_head, conf.n_embd
        past = self.heads.to_past(z).reshape(z.shape[0], conf.n_layer, heads, 1, hidden // heads)
        try:
            cache = DynamicCache(config=conf)
        except TypeError:  # transformers 4.x
            cache = DynamicCache()
        for layer in range(conf.n_layer):
            kv = past[:, layer]
            cache.update(kv, kv, layer)
        return cache

    def logits(self, z: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Next-token logits [B, T, V] of ``input_ids`` given the latent ``z`` (unscaled)."""
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = torch.cat([torch.ones(b, 1, dtype=attention_mask.dtype, device=z.device), attention_mask], 1)
        embeds = self.decoder.transformer.wte(input_ids) + self.heads.to_embed(z)[:, None]
        # positions start at 1: slot 0 is the latent (as in Optimus)
        pos = torch.arange(1, t + 1, device=z.device).expand(b, t)
        # transformers 5 names the argument `cache` (4.x: `past_key_values`, deprecated in 5)
        key = "cache" if _CACHE_KW else "past_key_values"
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                           use_cache=True, **{key: self._cache(z)})
        return out.logits

    def _targets(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tok = self.dec_tokenizer
        ids = tok([t.lower() for t in texts], add_special_tokens=False, truncation=True,
                  max_length=max_length)["input_ids"]
        seqs = [[tok.bos_token_id, *s, tok.eos_token_id] for s in ids]
        n = max(len(s) for s in seqs)
        inp = torch.full((len(seqs), n - 1), tok.pad_token_id, dtype=torch.long)
        lab = torch.full((len(seqs), n - 1), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), n - 1), dtype=torch.long)
        for i, s in enumerate(seqs):
            inp[i, : len(s) - 1] = torch.tensor(s[:-1])
            lab[i, : len(s) - 1] = torch.tensor(s[1:])
            mask[i, : len(s) - 1] = 1
        dev = self._device()
        return inp.to(dev), lab.to(dev), mask.to(dev)

    def loss(self, texts: list[str], max_length: int | None = None, sample: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(token cross-entropy summed per sentence, KL summed over latent dims), batch means.

        The total Optimus objective is ``rec + beta * kl`` (``beta`` = ``kl_beta``).
        """
        n = max_length or self.max_length
        mean, logvar = self.moments(texts, n)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        inp, lab, mask = self._targets(texts, n)
        logits = self.logits(z, inp, mask)
        rec = F.cross_entropy(logits.transpose(1, 2), lab, ignore_index=-100, reduction="none").sum(1).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
        return rec, kl

    @torch.no_grad()
    def decode(self, z: torch.Tensor, method: str = "greedy", num_beams: int = 4, max_length: int | None = None
               ) -> list[str]:
        """Texts decoded from unscaled latents ``z`` [B, D] by greedy or beam search."""
        n = max_length or self.max_length
        if method == "greedy":
            seqs = self._greedy(z, n)
        elif method == "beam":
            seqs = [self._beam(z[i : i + 1], n, num_beams) for i in range(z.shape[0])]
        else:
            from ..errors import ConfigError

            raise ConfigError(f"unknown decoding method '{method}'", "use greedy or beam")
        return [self.dec_tokenizer.decode(s, skip_special_tokens=True).strip() for s in seqs]

    def _greedy(self, z: torch.Tensor, n: int) -> list[list[int]]:
        tok = self.dec_tokenizer
        b = z.shape[0]
        ids = torch.full((b, 1), tok.bos_token_id, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        for _ in range(n + 1):
            nxt = self.logits(z, ids)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
        out = []
        for row in ids[:, 1:].tolist():
            out.append(row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row)
        return out

    def _beam(self, z: torch.Tensor, n: int, num_beams: int) -> list[int]:
        """Beam search for one latent; finished hypotheses scored by length-normalised log-prob."""
        tok = self.dec_tokenizer
        beams: list[tuple[list[int], float]] = [([tok.bos_token_id], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(n + 1):
            ids = torch.tensor([s for s, _ in beams], device=z.device)
            logp = self.logits(z.expand(len(beams), -1), ids)[:, -1].log_softmax(-1)
            scores = torch.tensor([s for _, s in beams], device=z.device)[:, None] + logp
            top = scores.flatten().topk(min(2 * num_beams, scores.numel()))
            cand: list[tuple[list[int], float]] = []
            vocab = logp.shape[1]
            for val, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                seq = beams[idx // vocab][0] + [idx % vocab]
                if idx % vocab == tok.eos_token_id:
                    finished.append((seq[1:-1], val / len(seq)))
                else:
                    cand.append((seq, val))
                if len(cand) == num_beams:
                    break
            beams = cand
            if not beams or (len(finished) >= num_beams and max(f[1] for f in finished) > beams[0][1] / n):
                break
        if not finished:
            finished = [(s[1:], v / len(s)) for s, v in beams]
        return max(finished, key=lambda f: f[1])[0]
