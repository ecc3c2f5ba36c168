"""The MedM2G model: one ``nn.Module`` holding every component, any-to-any generation, training hooks.

Components (``components()``; the keys are the folder names in a saved model):

==========================  ===============================================================
``vae_<m>``                 diffusers ``AutoencoderKL`` (1 channel) per imaging modality m
``unet_<m>``                diffusers ``UNet2DConditionModel`` per imaging modality
``text_vae``                Optimus-style VAE (``encoder``/``decoder``/``latent`` subfolders)
``unet_text``               flat VD-style UNet over the text latent
``text_encoder``            CLIP-style text encoder, the centre of the shared embedding space
``image_encoder_<m>``       CLIP-style 1-channel vision encoder per imaging modality
``context_encoder_<m>``     latent -> cross-attention tokens (cross-guidance), per modality
``conditioner_<m>``         builds branch m's cross-attention sequence (prompt/contrast/context)
==========================  ===============================================================

Conditioning of a target branch is a cross-attention sequence ``[prompt, contrast, context...]``:

- *prompt*: pooled, L2-normalised prompt embeddings of all conditions mixed with their weights
  (CoDi composable conditioning, :func:`mix_conditions`), projected by the branch conditioner;
- *contrast*: the target MRI contrast token (none for other targets);
- *context*: spatial tokens of pixel-aligned imaging sources (``conditioning="context"``), or
  the source latents are stacked on the noisy latent (``conditioning="concat"``); in joint
  generation, tokens of the partner branch's current noisy latent, recomputed every step.

The null condition (classifier-free guidance and training dropout) is the same everywhere:
the text encoder's embedding of the empty report ``""`` for the prompt (CoDi's CLIP("")), the
learned ``null_context`` token in every context slot, and zeros in ``concat`` slots. Training
(:meth:`diffusion_loss`) and sampling (:meth:`generate`) both get it from :meth:`null_embedding`
and :meth:`prompt_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .. import modalities
from ..config import ModelConfig, SampleConfig, model_preset
from ..errors import ConfigError, InputError, WeightsError
from . import schedulers
from .encoders import mix_conditions

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKL

    from .text_vae import TextVAE
    from .unet import Conditioner


@dataclass
class Condition:
    """One conditioning input of :meth:`MedM2G.generate`.

    ``modality`` is ``text``, ``xray``, ``ct``, ``mri`` or an MRI contrast (``t1`` means
    ``mri`` with ``contrast="t1"``). ``data`` is a list of reports for text, or images
    [B, 1, H, W] in [-1, 1] (one slice per row) for imaging modalities. ``weight`` is the mixing
    weight in composable conditioning.
    """

    modality: str
    data: torch.Tensor | list[str]
    weight: float = 1.0
    contrast: str | None = None

    def __post_init__(self) -> None:
        mod, contrast = modalities.split_target(self.modality)
        self.modality = mod
        self.contrast = self.contrast or contrast
        if self.contrast is not None and self.contrast not in modalities.MRI_CONTRASTS:
            raise ConfigError(f"unknown MRI contrast '{self.contrast}'",
                              f"use one of: {', '.join(modalities.MRI_CONTRASTS)}")
        if mod == "text":
            if isinstance(self.data, str):
                self.data = [self.data]
            if not isinstance(self.data, (list, tuple)) or not all(isinstance(t, str) for t in self.data):
                raise InputError("a text condition needs a list of strings", "pass the report text")
            self.data = list(self.data)
        elif not isinstance(self.data, torch.Tensor) or self.data.ndim != 4 or self.data.shape[1] != 1:
            raise InputError(f"a {mod} condition needs a tensor [B, 1, H, W]",
                             "convert the image to one channel in [-1, 1]")

    @property
    def key(self) -> str:
        """Source name: the contrast if any, else the modality."""
        return self.contrast or self.modality

    def __len__(self) -> int:
        return len(self.data) if isinstance(self.data, list) else int(self.data.shape[0])


def component_names(cfg: ModelConfig) -> list[str]:
    """Folder names of every component a model with ``cfg`` has, in a stable order."""
    names: list[str] = []
    for m in cfg.image_modalities:
        names += [f"vae_{m}", f"unet_{m}", f"image_encoder_{m}"]
    if cfg.has_text:
        names += ["text_vae", "unet_text"]
    names.append("text_encoder")
    for m in cfg.modalities:
        names += [f"context_encoder_{m}", f"conditioner_{m}"]
    return names


class MedM2G(nn.Module):
    """The MedM2G multi-modal latent diffusion model (see the module docstring)."""

    def __init__(self, config: ModelConfig, parts: dict[str, nn.Module], tokenizer: Any,
                 scale_factors: dict[str, float] | None = None, provenance: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        self.parts = nn.ModuleDict(parts)
        self.tokenizer = tokenizer  # the text encoder's tokenizer (the text VAE holds its own two)
        self.scale_factors: dict[str, float] = {m: 1.0 for m in config.modalities}
        self.scale_factors.update(scale_factors or {})
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.train_scheduler = schedulers.training_scheduler(config.scheduler)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, tokenizer_texts: list[str] | None = None,
                    device: str | torch.device = "cpu") -> MedM2G:
        """A freshly initialised model (seeded); ``device="meta"`` builds without allocating weights.

        ``tokenizer_texts`` trains the tokenizer (default: a small built-in radiology corpus).
        """
        from .builder import build_parts

        parts, tokenizer = build_parts(config.validate(), seed=seed, tokenizer_texts=tokenizer_texts, device=device)
        return cls(config, parts, tokenizer, provenance={"init": "random", "seed": seed})

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, tokenizer_texts: list[str] | None = None,
                    device: str | torch.device = "cpu", **overrides: Any) -> MedM2G:
        """A fresh model of preset ``name`` (tiny|small|full) with config ``overrides``."""
        return cls.from_config(model_preset(name, **overrides), seed=seed, tokenizer_texts=tokenizer_texts,
                               device=device)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        verify: bool = True) -> MedM2G:
        """Load a model folder (safetensors only; sha256 of every file checked unless ``verify=False``)."""
        from .io import load_model

        return load_model(cls, Path(path), device=device, dtype=dtype, verify=verify)

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder atomically (see :mod:`medm2g_cli.engine.io` for the layout)."""
        from .io import save_model

        return save_model(self, Path(path), overwrite=overwrite)

    # -- components ------------------------------------------------------------------------------

    def components(self) -> dict[str, nn.Module]:
        """Component folder name -> module."""
        return dict(self.parts.items())

    def component(self, name: str) -> nn.Module:
        """One component by folder name; :class:`WeightsError` naming it if the model lacks it."""
        if name not in self.parts:
            raise WeightsError(f"the model has no component '{name}'",
                               f"it has: {', '.join(self.parts)}; use a model folder with that branch")
        return self.parts[name]

    # Typed views of ``parts`` (an nn.ModuleDict, whose items mypy only knows as nn.Module).

    def _vae(self, mod: str) -> AutoencoderKL:
        return cast("AutoencoderKL", self.parts[f"vae_{mod}"])

    def _text_vae(self) -> TextVAE:
        return cast("TextVAE", self.parts["text_vae"])

    def _conditioner(self, mod: str) -> Conditioner:
        return cast("Conditioner", self.parts[f"conditioner_{mod}"])

    def _encoder(self, name: str) -> Any:
        # a transformers CLIP text/vision model with projection (duck-typed: config, forward)
        return self.parts[name]

    @property
    def image_size(self) -> int:
        """Side of the square images the imaging branches were built for."""
        return self.config.image.image_size

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        return next(self.parameters()).dtype

    def _need(self, modality: str) -> str:
        mod = modalities.get(modality).name
        if mod not in self.config.modalities:
            raise WeightsError(f"the model has no {mod} branch",
                               f"it has: {', '.join(self.config.modalities)}; use weights trained with {mod}")
        return mod

    @staticmethod
    def _order(a: Any, b: Any) -> tuple[str, Any]:
        # Accept both (modality, data) and (data, modality): the training API uses the latter.
        return (a, b) if isinstance(a, str) else (b, a)

    # -- autoencoders ----------------------------------------------------------------------------

    def encode_image(self, a: Any, b: Any, sample: bool = False, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Scaled latents of images [B,1,H,W] in [-1, 1]: ``encode_image(modality, x)`` (or ``(x, modality)``).

        Posterior mean unless ``sample``.
        """
        modality, x = self._order(a, b)
        mod = self._need(modality)
        dist = self._vae(mod).encode(x.to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean
        return z * self.scale_factors[mod]

    def decode_image(self, a: Any, b: Any) -> torch.Tensor:
        """Images [B,1,H,W] in [-1, 1] from scaled latents: ``decode_image(modality, z)``."""
        modality, z = self._order(a, b)
        mod = self._need(modality)
        x = self._vae(mod).decode(z.to(self.dtype) / self.scale_factors[mod]).sample
        return x.clamp(-1.0, 1.0)

    def autoencoder_loss(self, images: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(L1 reconstruction, KL per sample) of the modality's autoencoder on images in [-1, 1]."""
        mod = self._need(modality)
        vae = self._vae(mod)
        post = vae.encode(images.to(self.device, self.dtype)).latent_dist
        rec = vae.decode(post.sample()).sample
        return F.l1_loss(rec, images.to(rec.dtype)), post.kl().mean()

    def encode_text(self, texts: list[str], sample: bool = False) -> torch.Tensor:
        """Scaled text latents [B, D] (posterior mean unless ``sample``)."""
        self._need("text")
        mean, logvar = self._text_vae().moments(list(texts))
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return z * self.scale_factors["text"]

    def decode_text(self, z: torch.Tensor, method: str = "greedy", num_beams: int = 4, max_length: int | None = None
                    ) -> list[str]:
        """Reports decoded from scaled text latents [B, D] (greedy or beam search)."""
        self._need("text")
        return self._text_vae().decode(z.to(self.dtype) / self.scale_factors["text"], method=method,
                                             num_beams=num_beams, max_length=max_length)

    def text_vae_loss(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed token cross-entropy, KL) of the text VAE (batch means); total = rec + beta * KL."""
        self._need("text")
        return self._text_vae().loss(list(texts), max_length=max_length)

    # -- prompt embeddings -----------------------------------------------------------------------

    def embed_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Pooled text embeddings [B, E] in the shared space (the centre)."""
        enc = self._encoder("text_encoder")
        n = enc.config.max_position_embeddings
        tok = self.tokenizer([t.lower() for t in texts], padding=True, truncation=True, max_length=n,
                             return_tensors="pt").to(self.device)
        e = enc(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).text_embeds
        return F.normalize(e, dim=-1) if normalize else e

    def embed_image(self, a: Any, b: Any, normalize: bool = True) -> torch.Tensor:
        """Pooled image embeddings [B, E]: ``embed_image(modality, x)`` with x [B,1,H,W] in [-1, 1]."""
        modality, x = self._order(a, b)
        mod = self._need(modality)
        enc = self._encoder(f"image_encoder_{mod}")
        size = enc.config.image_size
        x = x.to(self.device, self.dtype)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        e = enc(pixel_values=x).image_embeds
        return F.normalize(e, dim=-1) if normalize else e

    def null_embedding(self, batch: int = 1) -> torch.Tensor:
        """The null prompt [batch, E]: the text encoder's embedding of ``""`` (training and CFG)."""
        return self.embed_text([""]).expand(batch, -1)

    def null_condition(self, batch: int = 1) -> torch.Tensor:
        """Alias of :meth:`null_embedding` (the pooled null prompt)."""
        return self.null_embedding(batch)

    @torch.no_grad()
    def calibrate_scale_factor(self, modality: str, data: torch.Tensor | list[str], batch_size: int = 16) -> float:
        """Set (and return) the latent scale factor of ``modality`` to 1/std of its latents on ``data``.

        Images [N,1,H,W] in [-1, 1] or reports; CoDi's ``scale_by_std``. Stored in ``medm2g.json``
        on save. Call it after the autoencoder stage and before training the diffusers.
        """
        from .autoencoder import compute_scale_factor

        mod = self._need(modalities.split_target(modality)[0])
        if mod == "text":
            texts = list(data)  # type: ignore[arg-type]
            lat = torch.cat([self._text_vae().moments(texts[i:i + batch_size])[0].float()
                             for i in range(0, len(texts), batch_size)])
            factor = 1.0 / max(lat.std().item(), 1e-6)
        else:
            factor = compute_scale_factor(self.parts[f"vae_{mod}"], data, batch_size)  # type: ignore[arg-type]
        self.scale_factors[mod] = factor
        return factor

    def embed_condition(self, cond: Condition) -> torch.Tensor:
        """Pooled embedding [B, E] of one :class:`Condition`."""
        if cond.modality == "text":
            return self.embed_text(cond.data)  # type: ignore[arg-type]
        return self.embed_image(cond.modality, cond.data)

    # -- conditioning sequence -------------------------------------------------------------------

    def uses_context(self, source: str, target: str) -> bool:
        """Whether a clean ``source`` image conditions ``target`` spatially (context tokens or concat).

        Only imaging -> imaging pairs are pixel-aligned (MRI<->CT, MRI contrasts); reports and
        X-ray -> text use the pooled embedding.
        """
        src, tgt = modalities.get(source).name, modalities.get(target).name
        return src != "text" and tgt != "text" and src in self.config.modalities

    def context_tokens(self, modality: str, latent: torch.Tensor, timestep: torch.Tensor | int = 0) -> torch.Tensor:
        """Context tokens [B, N, cross] of a scaled latent (timestep 0 = clean source)."""
        mod = self._need(modality)
        return self.parts[f"context_encoder_{mod}"](latent.to(self.dtype), timestep)

    def prompt_tokens(
        self,
        target: str,
        prompt: torch.Tensor | None,
        contrast: str | Sequence[str | None] | None = None,
        context: Sequence[tuple[str, torch.Tensor]] = (),
        drop: torch.Tensor | None = None,
        batch: int | None = None,
        null: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The cross-attention sequence [B, 2 + N_ctx, cross] of branch ``target``.

        ``prompt``: mixed pooled embedding [B, E] (None = null); ``contrast``: target contrast
        name (or one per row); ``context``: (source name, tokens [B, N, cross]) pairs;
        ``drop``: bool [B], rows replaced by the null condition (prompt and context; the contrast
        token is kept because it names the task, not a condition). ``null``: a precomputed
        :meth:`null_embedding` row (saves a text-encoder pass inside sampling loops).
        """
        mod = modalities.split_target(target)[0]
        cond = self._conditioner(mod)
        if batch is None:
            batch = prompt.shape[0] if prompt is not None else (context[0][1].shape[0] if context else 1)
        if prompt is None or drop is not None:
            null = (self.null_embedding(1) if null is None else null).to(self.device, self.dtype).expand(batch, -1)
        p = null if prompt is None else prompt.to(self.device, self.dtype)
        if drop is not None:
            assert null is not None and p is not None  # set above whenever drop is given
            p = torch.where(drop[:, None], null, p)
        assert p is not None  # the prompt or the null embedding
        seq = [cond.prompt_token(p)[:, None]]
        names = [contrast] * batch if contrast is None or isinstance(contrast, str) else list(contrast)
        idx = torch.tensor([cond.contrast_index(c if c in modalities.MRI_CONTRASTS else None) for c in names],
                           device=self.device)
        seq.append(cond.contrast_embed(idx)[:, None])
        for key, toks in context:
            src = torch.tensor([cond.source_index(key)], device=self.device)
            t = toks.to(self.dtype) + cond.source_embed(src)[:, None]
            if drop is not None:
                t = torch.where(drop[:, None, None], cond.null_context.expand_as(t), t)
            seq.append(t)
        return torch.cat(seq, dim=1)

    def null_tokens_like(self, target: str, tokens: torch.Tensor, contrast: str | Sequence[str | None] | None,
                         n_keep: int = 0, null: torch.Tensor | None = None) -> torch.Tensor:
        """The unconditional sequence matching ``tokens``: null prompt, same contrast, null context.

        The last ``n_keep`` tokens (a joint-generation partner's context) are kept as they are.
        """
        b, n, _ = tokens.shape
        mod = modalities.split_target(target)[0]
        cond = self._conditioner(mod)
        head = self.prompt_tokens(target, None, contrast, batch=b, null=null)
        n_null = n - 2 - n_keep
        parts = [head, cond.null_context.to(self.dtype).expand(b, n_null, -1)]
        if n_keep:
            parts.append(tokens[:, n - n_keep:])
        return torch.cat(parts, dim=1)

    # -- denoiser --------------------------------------------------------------------------------

    def predicts_v(self, target: str) -> bool:
        """Whether branch ``target``'s UNet outputs v rather than epsilon (``scheduler.v_prediction``)."""
        return modalities.split_target(target)[0] in self.config.scheduler.v_prediction

    def _alphas(self, t: torch.Tensor | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) per row of ``like``, broadcastable to it."""
        ac = self.train_scheduler.alphas_cumprod.to(like.device)
        tt = torch.as_tensor(t, device=like.device).reshape(-1).long().expand(like.shape[0])
        a = ac[tt].to(torch.float32).reshape(-1, *([1] * (like.dim() - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def model_output(self, target: str, z_t: torch.Tensor, t: torch.Tensor | int, tokens: torch.Tensor,
                     concat: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output of branch ``target``'s UNet: epsilon, or v where :meth:`predicts_v`."""
        mod = self._need(modalities.split_target(target)[0])
        if mod == "text":
            return self.parts["unet_text"](z_t, t, tokens)
        if self.config.conditioning == "concat":
            if concat is None:
                concat = z_t.new_zeros(z_t.shape[0], z_t.shape[1] * self.config.concat_slots, *z_t.shape[2:])
            z_t = torch.cat([z_t, concat], dim=1)
        return self.parts[f"unet_{mod}"](z_t, t, encoder_hidden_states=tokens).sample

    def predict_noise(self, target: str, z_t: torch.Tensor, t: torch.Tensor | int, tokens: torch.Tensor,
                      concat: torch.Tensor | None = None) -> torch.Tensor:
        """Epsilon of branch ``target`` for noisy latents ``z_t`` at timesteps ``t`` given ``tokens``."""
        out = self.model_output(target, z_t, t, tokens, concat)
        if not self.predicts_v(target):
            return out
        sa, sb = self._alphas(t, z_t)  # z_t = sa x0 + sb eps, v = sa eps - sb x0  =>  eps = sa v + sb z_t
        return (sa * out.float() + sb * z_t.float()).to(out.dtype)

    def _concat(self, sources: Sequence[tuple[str, torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
        """Source latents stacked into the ``concat_slots`` channels (zeros for empty slots)."""
        slots = self.config.concat_slots
        if len(sources) > slots:
            raise ConfigError(f"{len(sources)} image sources but the model has {slots} concat slots",
                              "give fewer image conditions")
        c = like.shape[1]
        out = like.new_zeros(like.shape[0], c * slots, *like.shape[2:])
        # Slots follow one canonical order of source names (t1 before t2 before ct ...), so
        # `--input t2=... --input t1=...` and training's t1+t2 fill the same slots.
        rank = {k: i for i, k in enumerate((*modalities.MRI_CONTRASTS, "mri", "ct", "xray", "text"))}
        sources = sorted(sources, key=lambda kv: rank.get(str(kv[0]).lower(), len(rank)))
        for i, (_, z) in enumerate(sources):
            out[:, i * c:(i + 1) * c] = z
        return out

    # -- training hooks --------------------------------------------------------------------------

    def diffusion_loss(
        self,
        target: str,
        x0: torch.Tensor,
        cond: torch.Tensor | None,
        cond_drop_prob: float = 0.1,
        contrast: str | Sequence[str | None] | None = None,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        sources: Sequence[tuple[str, torch.Tensor]] = (),
    ) -> torch.Tensor:
        """Epsilon-MSE (v-MSE for a ``scheduler.v_prediction`` branch) of ``target`` on clean scaled latents ``x0``.

        ``cond``: pooled prompt embedding [B, E] (e.g. :meth:`embed_text` or a mix), None =
        unconditional. ``sources``: (name, clean scaled latent) of pixel-aligned imaging sources
        (e.g. ``[("ct", z_ct)]`` when training ``mri`` from CT) that feed context tokens or concat
        slots. Rows are dropped to the null condition with probability ``cond_drop_prob``.
        """
        mod, tcontrast = modalities.split_target(target)
        contrast = contrast if contrast is not None else tcontrast
        b = x0.shape[0]
        dev = x0.device
        t = timesteps if timesteps is not None else torch.randint(
            0, self.config.scheduler.num_train_timesteps, (b,), device=dev)
        noise = torch.randn_like(x0) if noise is None else noise
        z_t = self.train_scheduler.add_noise(x0, noise, t)  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
        drop = torch.rand(b, device=dev) < cond_drop_prob
        context, concat = self._source_inputs(mod, sources, x0, drop)
        tokens = self.prompt_tokens(mod, cond, contrast, context, drop=drop, batch=b)
        out = self.model_output(mod, z_t, t, tokens, concat)
        want = self.train_scheduler.get_velocity(x0, noise, t) if self.predicts_v(mod) else noise  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
        return F.mse_loss(out.float(), want.float())

    def _source_inputs(self, target: str, sources: Sequence[tuple[str, torch.Tensor]], like: torch.Tensor,
                       drop: torch.Tensor | None) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor | None]:
        """Context tokens (context mode) or concat channels (concat mode) of clean sources."""
        if not sources:
            return [], None
        if self.config.conditioning == "concat" and target != "text":
            concat = self._concat(sources, like)
            if drop is not None:
                concat = torch.where(drop[:, None, None, None], torch.zeros_like(concat), concat)
            return [], concat
        ctx = [(key, self.context_tokens(modalities.split_target(key)[0], z, 0)) for key, z in sources]
        return ctx, None

    def cross_guided_loss(self, a: tuple[str, torch.Tensor, Any], b: tuple[str, torch.Tensor, Any],
                          cond_drop_prob: float = 0.1, prompts: dict[str, torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Epsilon losses of both branches of a flow, each attending to the other's noisy-latent context.

        ``a``/``b`` = (modality, clean scaled latents [B, ...], contrast names per row or None).
        Both sides share the timestep and have independent noise (method.md section 1.4); the
        partner's context tokens come from its *noisy* latent at that timestep, as at sampling.
        ``prompts`` optionally maps a modality to its pooled prompt [B, E] (default null).
        """
        (ma, za, ka), (mb, zb, kb) = a, b
        ma, mb = modalities.split_target(ma)[0], modalities.split_target(mb)[0]
        n = za.shape[0]
        dev = za.device
        t = torch.randint(0, self.config.scheduler.num_train_timesteps, (n,), device=dev)
        na, nb = torch.randn_like(za), torch.randn_like(zb)
        zta, ztb = self.train_scheduler.add_noise(za, na, t), self.train_scheduler.add_noise(zb, nb, t)  # type: ignore[arg-type]  # diffusers annotates timesteps as IntTensor; int64 works
        drop = torch.rand(n, device=dev) < cond_drop_prob
        prompts = prompts or {}
        losses = []
        for (m, zt, noise, keys), (pm, pzt) in (((ma, zta, na, ka), (mb, ztb)), ((mb, ztb, nb, kb), (ma, zta))):
            ctx = self.context_tokens(pm, pzt, t)
            tokens = self.prompt_tokens(m, prompts.get(m), keys, [(pm, ctx)], drop=drop, batch=n)
            eps = self.predict_noise(m, zt, t, tokens)
            losses.append(F.mse_loss(eps.float(), noise.float()))
        return losses[0], losses[1]

    def cross_guidance_parameters(self, modality: str) -> int:
        """Parameters cross-guidance adds to ``modality``'s branch (context encoder + conditioner)."""
        mod = self._need(modality)
        return sum(p.numel() for n in (f"context_encoder_{mod}", f"conditioner_{mod}")
                   for p in self.parts[n].parameters())

    def upgrade_prompt_scale(self) -> list[str]:
        """Move conditioners saved with the old prompt scale (1.0) to the current one, keeping the
        function; returns the conditioners changed. Training from ``--init`` calls it, inference does not
        need to (old weights load and run as saved)."""
        from .builder import prompt_scale

        target = prompt_scale(self.config)
        changed = []
        for m in self.config.modalities:
            cond = self._conditioner(m)
            if abs(cond.prompt_scale - target) > 1e-6:
                cond.set_prompt_scale(target)
                changed.append(f"conditioner_{m}")
        return changed

    def trainable_parameters(self, stage: str, modalities_: Sequence[str] | None = None
                             ) -> dict[str, list[nn.Parameter]]:
        """Per component, the parameters ``stage`` trains for ``modalities_`` (default: all).

        - ``autoencoders``: ``vae_<m>`` and ``text_vae``;
        - ``alignment``: ``image_encoder_<m>`` (the text encoder is the frozen centre);
        - ``diffusion``: ``unet_<m>``, ``conditioner_<m>`` and the imaging context encoders;
        - ``multiflow``: the cross-guidance parameters: ``context_encoder_<m>``,
          ``conditioner_<m>`` and the UNets' cross-attention (``attn2``) layers; the base
          diffusers stay frozen (CoDi).
        """
        mods = [modalities.split_target(m)[0] for m in (modalities_ or self.config.modalities)]
        mods = [m for m in dict.fromkeys(mods) if m in self.config.modalities]
        out: dict[str, list[nn.Parameter]] = {}

        def add(name: str, filt: str | None = None) -> None:
            if name in self.parts:
                ps = [p for n, p in self.parts[name].named_parameters() if filt is None or filt in n]
                if ps:
                    out[name] = ps

        for m in mods:
            if stage == "autoencoders":
                add("text_vae" if m == "text" else f"vae_{m}")
            elif stage == "alignment":
                if m != "text":
                    add(f"image_encoder_{m}")
            elif stage == "diffusion":
                add(f"unet_{m}")
                add(f"conditioner_{m}")
                if m != "text" and self.config.conditioning == "context":
                    for s in self.config.image_modalities:
                        add(f"context_encoder_{s}")
            elif stage == "multiflow":
                add(f"context_encoder_{m}")
                add(f"conditioner_{m}")
                add(f"unet_{m}", "attn2")
            else:
                raise ConfigError(f"unknown training stage '{stage}'",
                                  "use autoencoders, alignment, diffusion or multiflow")
        return out

    # -- generation ------------------------------------------------------------------------------

    def _rows(self, conditions: Sequence[Condition]) -> int:
        sizes = {len(c) for c in conditions} - {1}
        if len(sizes) > 1:
            raise InputError(f"conditions have different batch sizes {sorted(sizes)}",
                             "give every condition the same number of rows (or one row)")
        return sizes.pop() if sizes else 1

    def _prepare(self, target: str, conditions: Sequence[Condition], rows: int, latent_like: torch.Tensor
                 ) -> tuple[torch.Tensor | None, list[tuple[str, torch.Tensor]], torch.Tensor | None]:
        """Pooled mixed prompt, source context tokens (once per source) and concat channels."""
        if not conditions:
            return None, [], None
        embs, weights, sources = [], [], []
        for c in conditions:
            if c.modality != "text":
                self._need(c.modality)
            e = self.embed_condition(c)
            embs.append(e.expand(rows, -1) if e.shape[0] == 1 else e)
            weights.append(c.weight)
            if self.uses_context(c.modality, target):
                z = self.encode_image(c.modality, c.data)
                sources.append((c.key, z.expand(rows, *z.shape[1:]) if z.shape[0] == 1 else z))
        prompt = mix_conditions(embs, weights)
        if sources and sources[0][1].shape[2:] != latent_like.shape[2:]:
            raise InputError(f"source images give latents {tuple(sources[0][1].shape[2:])} but the target is "
                             f"{tuple(latent_like.shape[2:])}", "use the same height/width for sources and target")
        ctx, concat = self._source_inputs(target, sources, latent_like[:1].expand(rows, *latent_like.shape[1:]), None)
        return prompt, ctx, concat

    def latent_shape(self, target: str, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        """Shape of one latent of ``target`` (without batch)."""
        mod = modalities.split_target(target)[0]
        if mod == "text":
            return (self.config.text.latent_dim,)
        img = self.config.image
        f = img.autoencoder.downsample_factor
        mult = f * 2 ** (len(img.block_out_channels) - 1)
        h, w = height or img.image_size, width or img.image_size
        if h % mult or w % mult:
            raise InputError(f"image size {h}x{w} is not a multiple of {mult}", f"resize to a multiple of {mult}")
        return (img.latent_channels, h // f, w // f)

    @staticmethod
    def _generators(n: int, sample: SampleConfig, generator: torch.Generator | None) -> list[torch.Generator]:
        # One CPU generator per output sample: the noise of sample i does not depend on how the
        # batch is sliced, nor on the device.
        base = sample.seed if generator is None else int(
            torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        return [torch.Generator("cpu").manual_seed(base + i) for i in range(n)]

    def _noise(self, gens: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(self.device, self.dtype)

    def guided_noise(self, target: str, z: torch.Tensor, t: Any, tokens: torch.Tensor, null_tokens: torch.Tensor,
                     guidance: float, concat: torch.Tensor | None = None,
                     null_concat: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free guided epsilon: eps(null) + s * (eps(cond) - eps(null)).

        Conditional and unconditional halves run in ONE batched forward; ``guidance == 1``
        returns the conditional prediction itself (no unconditional pass).
        """
        tt = torch.as_tensor(t, device=self.device).reshape(-1)
        if guidance == 1.0:
            return self.predict_noise(target, z, tt.expand(z.shape[0]), tokens, concat)
        zz = torch.cat([z, z])
        cc = None if concat is None else torch.cat([null_concat if null_concat is not None
                                                    else torch.zeros_like(concat), concat])
        eps = self.predict_noise(target, zz, tt.expand(zz.shape[0]), torch.cat([null_tokens, tokens]), cc)
        e_null, e_cond = eps.chunk(2)
        return e_null + guidance * (e_cond - e_null)

    def _guided_eps(self, target: str, z: torch.Tensor, t: Any, seq: torch.Tensor, seq_concat: torch.Tensor | None,
                    guidance: float) -> torch.Tensor:
        # guided_noise with the [null; cond] conditioning already concatenated (hoisted out of the
        # step loop by generate); one batched forward for both halves.
        tt = torch.as_tensor(t, device=self.device).reshape(-1)
        if guidance == 1.0:
            return self.predict_noise(target, z, tt.expand(z.shape[0]), seq, seq_concat)
        eps = self.predict_noise(target, torch.cat([z, z]), tt.expand(2 * z.shape[0]), seq, seq_concat)
        e_null, e_cond = eps.chunk(2)
        return e_null + guidance * (e_cond - e_null)

    def _step(self, sched: Any, sample: SampleConfig, eps: torch.Tensor, t: Any, z: torch.Tensor,
              gens: Sequence[torch.Generator]) -> torch.Tensor:
        if sample.sampler == "ddim":
            noise = self._noise(gens, tuple(z.shape[1:])) if sample.eta > 0 else None
            return schedulers.ddim_step(sched, eps, int(t), z, sample.eta, noise)
        if sample.sampler == "sde-dpm++":  # per-sample seeded noise, as for DDIM
            return sched.step(eps, t, z, variance_noise=self._noise(gens, tuple(z.shape[1:]))).prev_sample
        return sched.step(eps, t, z).prev_sample

    @torch.inference_mode()
    def generate(
        self,
        target: str,
        conditions: Sequence[Condition] = (),
        *,
        num_samples: int = 1,
        sample: SampleConfig | None = None,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        batch_size: int | None = None,
        decode: bool = True,
        text_method: str = "greedy",
        num_beams: int = 4,
        max_length: int | None = None,
    ) -> torch.Tensor | list[str]:
        """Generate ``target`` (``text``, ``xray``, ``ct``, ``mri`` or an MRI contrast) from ``conditions``.

        Returns images [N, 1, H, W] in [-1, 1] or N reports, N = rows of the conditions x
        ``num_samples`` (sample i belongs to condition row i // num_samples). With
        ``decode=False`` the latents are returned. Sample i uses seed ``sample.seed + i`` (or a
        base drawn from ``generator``), so outputs do not depend on ``batch_size``.
        """
        sample = (sample or SampleConfig()).validate()
        mod, contrast = modalities.split_target(target)
        self._need(mod)
        conditions = list(conditions)
        rows = self._rows(conditions)
        shape = self.latent_shape(target, height, width)
        like = torch.zeros((1, *shape), device=self.device, dtype=self.dtype)
        prompt, ctx, concat = self._prepare(mod, conditions, rows, like)
        tokens = self.prompt_tokens(mod, prompt, contrast, ctx, batch=rows)
        null = self.null_tokens_like(mod, tokens, contrast)
        if num_samples > 1:
            tokens, null = tokens.repeat_interleave(num_samples, 0), null.repeat_interleave(num_samples, 0)
            concat = None if concat is None else concat.repeat_interleave(num_samples, 0)
        total = rows * num_samples
        guidance = sample.guidance if conditions else 1.0  # nothing to guide towards
        gens = self._generators(total, sample, generator)
        bs = batch_size or total
        outs = []
        for s in range(0, total, bs):
            sl = slice(s, min(s + bs, total))
            g = gens[sl]
            z = self._noise(g, shape)
            sched = schedulers.sampling_scheduler(self.config.scheduler, sample)
            z = z * sched.init_noise_sigma
            cc = None if concat is None else concat[sl]
            # The guided batch's conditioning ([null; cond] tokens and concat channels) is built
            # once per slice batch, not once per step (same values as :meth:`guided_noise`).
            # After ``guided`` steps (sample.guidance_stop) only the conditional rows run.
            guided = 0 if guidance == 1.0 else schedulers.guided_steps(sample)
            seq, seq_cc = tokens[sl], cc
            if guided:
                seq = torch.cat([null[sl], tokens[sl]])
                seq_cc = None if cc is None else torch.cat([torch.zeros_like(cc), cc])
            for i, t in enumerate(sched.timesteps):
                if i == guided and guided:
                    seq, seq_cc = tokens[sl], cc
                eps = self._guided_eps(mod, z, t, seq, seq_cc, guidance if i < guided else 1.0)
                z = self._step(sched, sample, eps, t, z, g)
            outs.append(z)
        z = torch.cat(outs)
        if not decode:
            return z
        if mod == "text":
            return self.decode_text(z, method=text_method, num_beams=num_beams, max_length=max_length)
        return torch.cat([self.decode_image(mod, z[i:i + bs]) for i in range(0, total, bs)])

    @torch.inference_mode()
    def generate_joint(
        self,
        targets: tuple[str, str],
        conditions: Sequence[Condition] = (),
        *,
        num_samples: int = 1,
        sample: SampleConfig | None = None,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        decode: bool = True,
        text_method: str = "greedy",
        num_beams: int = 4,
        max_length: int | None = None,
    ) -> dict[str, torch.Tensor | list[str]]:
        """Generate two modalities together (e.g. ``("xray", "text")``): at every step each branch
        cross-attends to context tokens of the other branch's current noisy latent.

        The prompt (mixed pooled embedding of ``conditions``) is shared; classifier-free guidance
        drops the prompt and keeps the partner's context (joint coherence is not guided away).
        Returns ``{target: output}``.
        """
        sample = (sample or SampleConfig()).validate()
        if len(targets) != 2 or targets[0] == targets[1]:
            raise ConfigError("joint generation needs two different targets", "e.g. xray and text")
        specs = [modalities.split_target(t) for t in targets]
        for m, _ in specs:
            self._need(m)
        conditions = list(conditions)
        rows = self._rows(conditions)
        total = rows * num_samples
        prompt = None
        if conditions:
            prompt = mix_conditions([e.expand(rows, -1) if e.shape[0] == 1 else e
                                     for e in (self.embed_condition(c) for c in conditions)],
                                    [c.weight for c in conditions]).repeat_interleave(num_samples, 0)
        guidance = sample.guidance if conditions else 1.0
        shapes = [self.latent_shape(t, height, width) for t in targets]
        gens = self._generators(total, sample, generator)
        null_emb = self.null_embedding(1)  # once, not per step
        z = [self._noise(gens, shapes[0]), self._noise(gens, shapes[1])]
        sched = [schedulers.sampling_scheduler(self.config.scheduler, sample) for _ in range(2)]
        guided = schedulers.guided_steps(sample)
        for step_i, t in enumerate(sched[0].timesteps):
            tt = torch.as_tensor(t, device=self.device).reshape(-1).expand(total)
            ctx = [self.context_tokens(specs[i][0], z[i], tt) for i in range(2)]
            new = []
            for i in range(2):
                m, c = specs[i]
                pm = specs[1 - i][0]
                tokens = self.prompt_tokens(m, prompt, c, [(pm, ctx[1 - i])], batch=total, null=null_emb)
                null = self.null_tokens_like(m, tokens, c, n_keep=ctx[1 - i].shape[1], null=null_emb)
                eps = self.guided_noise(m, z[i], t, tokens, null, guidance if step_i < guided else 1.0)
                new.append(self._step(sched[i], sample, eps, t, z[i], gens))
            z = new
        if not decode:
            return {targets[0]: z[0], targets[1]: z[1]}
        out: dict[str, torch.Tensor | list[str]] = {}
        for (m, _), name, zi in zip(specs, targets, z, strict=True):
            out[name] = (self.decode_text(zi, method=text_method, num_beams=num_beams, max_length=max_length)
                         if m == "text" else self.decode_image(m, zi))
        return out
