"""The MedM2G model: one ``nn.Module`` holding every component, its save/load and one-step output.

Sampling (the denoising loop, guidance, decoding) is :mod:`medm2g_cli.engine.sampling`; the training
losses and the stage rules are :mod:`medm2g_cli.training.objectives` and
:mod:`medm2g_cli.training.trainable`.

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
(:func:`~medm2g_cli.training.objectives.diffusion_loss`) and sampling
(:func:`~medm2g_cli.engine.sampling.generate`) both get it from :meth:`null_embedding` and
:meth:`prompt_tokens`.
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
from ..config import ModelConfig, model_preset
from ..errors import ConfigError, InputError, WeightsError
from .autoencoder import compute_scale_factor
from .builder import build_parts, prompt_scale
from .io import load_model, save_model
from .schedulers import training_scheduler

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKL

    from .text_vae import TextVAE
    from .unet import Conditioner


@dataclass
class Condition:
    """One conditioning input of :func:`~medm2g_cli.engine.sampling.generate`.

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
        self.train_scheduler = training_scheduler(config.scheduler)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, tokenizer_texts: list[str] | None = None,
                    device: str | torch.device = "cpu") -> MedM2G:
        """A freshly initialised model (seeded); ``device="meta"`` builds without allocating weights.

        ``tokenizer_texts`` trains the tokenizer (default: a small built-in radiology corpus).
        """
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
        return load_model(cls, Path(path), device=device, dtype=dtype, verify=verify)

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder atomically (see :mod:`medm2g_cli.engine.io` for the layout)."""
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

    def vae(self, mod: str) -> AutoencoderKL:
        """The autoencoder of imaging branch ``mod``."""
        return cast("AutoencoderKL", self.parts[f"vae_{mod}"])

    def text_vae(self) -> TextVAE:
        """The text VAE."""
        return cast("TextVAE", self.parts["text_vae"])

    def conditioner(self, mod: str) -> Conditioner:
        """The conditioner (cross-attention sequence builder) of branch ``mod``."""
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

    def require_branch(self, modality: str) -> str:
        """The branch name of ``modality``; :class:`WeightsError` if the model lacks that branch."""
        mod = modalities.get(modality).name
        if mod not in self.config.modalities:
            raise WeightsError(f"the model has no {mod} branch",
                               f"it has: {', '.join(self.config.modalities)}; use weights trained with {mod}")
        return mod

    # -- autoencoders ----------------------------------------------------------------------------

    def encode_image(self, modality: str, x: torch.Tensor, sample: bool = False,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents of images ``x`` [B,1,H,W] in [-1, 1] (posterior mean unless ``sample``)."""
        mod = self.require_branch(modality)
        dist = self.vae(mod).encode(x.to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean
        return z * self.scale_factors[mod]

    def decode_image(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        """Images [B,1,H,W] in [-1, 1] from scaled latents ``z``."""
        mod = self.require_branch(modality)
        x = self.vae(mod).decode(z.to(self.dtype) / self.scale_factors[mod]).sample
        return x.clamp(-1.0, 1.0)

    def encode_text(self, texts: list[str], sample: bool = False) -> torch.Tensor:
        """Scaled text latents [B, D] (posterior mean unless ``sample``)."""
        self.require_branch("text")
        mean, logvar = self.text_vae().moments(list(texts))
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return z * self.scale_factors["text"]

    def decode_text(self, z: torch.Tensor, method: str = "greedy", num_beams: int = 4, max_length: int | None = None
                    ) -> list[str]:
        """Reports decoded from scaled text latents [B, D] (greedy or beam search)."""
        self.require_branch("text")
        return self.text_vae().decode(z.to(self.dtype) / self.scale_factors["text"], method=method,
                                             num_beams=num_beams, max_length=max_length)

    # -- prompt embeddings -----------------------------------------------------------------------

    def embed_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Pooled text embeddings [B, E] in the shared space (the centre)."""
        enc = self._encoder("text_encoder")
        n = enc.config.max_position_embeddings
        tok = self.tokenizer([t.lower() for t in texts], padding=True, truncation=True, max_length=n,
                             return_tensors="pt").to(self.device)
        e = enc(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).text_embeds
        return F.normalize(e, dim=-1) if normalize else e

    def embed_image(self, modality: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Pooled image embeddings [B, E] of images ``x`` [B,1,H,W] in [-1, 1]."""
        mod = self.require_branch(modality)
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

    @torch.no_grad()
    def calibrate_scale_factor(self, modality: str, data: torch.Tensor | list[str], batch_size: int = 16) -> float:
        """Set (and return) the latent scale factor of ``modality`` to 1/std of its latents on ``data``.

        Images [N,1,H,W] in [-1, 1] or reports; CoDi's ``scale_by_std``. Stored in ``medm2g.json``
        on save. Call it after the autoencoder stage and before training the diffusers.
        """
        mod = self.require_branch(modalities.split_target(modality)[0])
        if mod == "text":
            texts = list(data)  # type: ignore[arg-type]
            lat = torch.cat([self.text_vae().moments(texts[i:i + batch_size])[0].float()
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
        return self.embed_image(cond.modality, cast(torch.Tensor, cond.data))

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
        mod = self.require_branch(modality)
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
        cond = self.conditioner(mod)
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
        cond = self.conditioner(mod)
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
        mod = self.require_branch(modalities.split_target(target)[0])
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

    def source_inputs(self, target: str, sources: Sequence[tuple[str, torch.Tensor]], like: torch.Tensor,
                      drop: torch.Tensor | None) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor | None]:
        """Context tokens (context mode) or concat channels (concat mode) of clean sources.

        ``sources``: (source name, clean scaled latent) pairs; ``drop``: bool [B], rows whose concat
        channels become zeros (the null condition; context rows are dropped in :meth:`prompt_tokens`).
        """
        if not sources:
            return [], None
        if self.config.conditioning == "concat" and target != "text":
            concat = self._concat(sources, like)
            if drop is not None:
                concat = torch.where(drop[:, None, None, None], torch.zeros_like(concat), concat)
            return [], concat
        ctx = [(key, self.context_tokens(modalities.split_target(key)[0], z, 0)) for key, z in sources]
        return ctx, None

    def upgrade_prompt_scale(self) -> list[str]:
        """Move conditioners saved with the old prompt scale (1.0) to the current one, keeping the
        function; returns the conditioners changed. Training from ``--init`` calls it, inference does not
        need to (old weights load and run as saved)."""
        target = prompt_scale(self.config)
        changed = []
        for m in self.config.modalities:
            cond = self.conditioner(m)
            if abs(cond.prompt_scale - target) > 1e-6:
                cond.set_prompt_scale(target)
                changed.append(f"conditioner_{m}")
        return changed

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

