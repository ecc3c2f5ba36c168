"""Dataclass configurations of the MedM2G model and sampler, with the ``tiny``/``small``/``full`` presets.

``full`` is Table A3 of the MedM2G supplement: every diffuser is an LDM UNet with 320 channels,
multipliers (1, 2, 4, 4), two layers per level, attention (and cross-attention) at latent
resolutions 64/32/16 (the first three levels), 8 heads, 768-d cross-attention and embedding
layers; images use SD-1.5's KL-f8 autoencoder (4x64x64 latents for 512 px), text an Optimus VAE
with a 768-d latent; 1000 diffusion steps on the LDM "linear" schedule (beta 0.00085 -> 0.012,
diffusers ``scaled_linear``); DDIM, 50 steps, eta 1.0, guidance 2.0.

``small`` trains on a CPU in well under an hour on 64 px phantom data; ``tiny`` builds in about a
second for tests. Configs round-trip through JSON (``to_dict``/``from_dict``) and are stored in
every model folder's ``medm2g.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from . import modalities
from .errors import ConfigError

ConditioningMode = Literal["context", "concat"]


# Parameter-name prefixes of a diffusers AutoencoderKL that act after the latent. Training only these
# (``ae_decoder_only``) leaves the latents, and every diffuser trained on them, valid.
DECODER_PREFIXES: tuple[str, ...] = ("decoder.", "post_quant_conv.")


@dataclass
class AutoencoderConfig:
    """diffusers ``AutoencoderKL`` of one imaging branch (1 input/output channel)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along each axis (8 for SD's KL-f8)."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class ImageBranchConfig:
    """One imaging branch (X-ray, CT or MRI): autoencoder + ``UNet2DConditionModel``."""

    image_size: int = 512
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    # Which UNet levels carry (cross-)attention; Table A3: latent resolutions 64, 32, 16 = levels 0-2.
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    num_heads: int = 8
    norm_num_groups: int = 32
    # Table A3 also lists "head channels 32", which 8 heads over 320 channels contradict (8 x 40). None
    # keeps SD-1.5's 8 heads at every level; 32 gives channels/32 heads per level (10/20/40/40) instead.
    head_channels: int | None = None

    @property
    def latent_size(self) -> int:
        """Side of the square latent (64 for 512 px with KL-f8)."""
        return self.image_size // self.autoencoder.downsample_factor

    @property
    def latent_channels(self) -> int:
        """Channels of the image latent."""
        return self.autoencoder.latent_channels


@dataclass
class TextBranchConfig:
    """The text branch: an Optimus-style VAE (BERT encoder, GPT-2 decoder) and a flat UNet."""

    latent_dim: int = 768
    max_length: int = 60
    kl_beta: float = 1.0
    # BERT-style encoder
    encoder_hidden: int = 768
    encoder_layers: int = 12
    encoder_heads: int = 12
    # GPT-2-style decoder
    decoder_hidden: int = 768
    decoder_layers: int = 12
    decoder_heads: int = 12
    # Flat (VD-style) UNet over the latent vector: channels per position, positions (VD second_dim).
    unet_channels: int = 320
    unet_mult: tuple[int, ...] = (1, 2, 4, 4)
    unet_layers: int = 2
    unet_attention_levels: tuple[bool, ...] = (True, True, True, False)
    unet_positions: int = 4
    unet_heads: int = 8
    unet_norm_groups: int = 32


@dataclass
class EncoderConfig:
    """CLIP-style prompt encoders: one text encoder (the centre) and one vision encoder per imaging modality."""

    embed_dim: int = 768
    vocab_size: int = 8192
    text_hidden: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_max_positions: int = 77
    vision_hidden: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    vision_image_size: int = 224
    vision_patch_size: int = 14
    # Named CLIP size these fields came from (CLIP_SCALES); "" = set field by field. Overriding it
    # (e.g. ``model: {encoders: {scale: vit-l}}``) resets every other field to that size first.
    scale: str = ""


CLIP_SCALES: dict[str, dict[str, int]] = {
    # OpenAI CLIP ViT-B/16: the size the supplement reports its tables with (Table A10, text under it)
    "vit-b": {"embed_dim": 512, "text_hidden": 512, "text_layers": 12, "text_heads": 8, "vision_hidden": 768,
              "vision_layers": 12, "vision_heads": 12, "vision_image_size": 224, "vision_patch_size": 16},
    # OpenAI CLIP ViT-L/14 (CoDi's prompt encoder)
    "vit-l": {"embed_dim": 768, "text_hidden": 768, "text_layers": 12, "text_heads": 12, "vision_hidden": 1024,
              "vision_layers": 24, "vision_heads": 16, "vision_image_size": 224, "vision_patch_size": 14},
    # OpenCLIP ViT-H/14
    "vit-h": {"embed_dim": 1024, "text_hidden": 1024, "text_layers": 24, "text_heads": 16, "vision_hidden": 1280,
              "vision_layers": 32, "vision_heads": 16, "vision_image_size": 224, "vision_patch_size": 14},
}
"""Prompt-encoder sizes of Table A10 (ViT-B, ViT-L, ViT-H), selected with ``encoders.scale``."""


def clip_encoders(scale: str, base: EncoderConfig | None = None) -> EncoderConfig:
    """``base`` (default: a fresh EncoderConfig) with the CLIP size ``scale`` (vit-b|vit-l|vit-h)."""
    if scale not in CLIP_SCALES:
        raise ConfigError(f"unknown CLIP scale '{scale}'", f"use one of: {', '.join(CLIP_SCALES)}")
    return dataclasses.replace(base or EncoderConfig(), scale=scale, **CLIP_SCALES[scale])


@dataclass
class SchedulerConfig:
    """Training noise schedule (Table A3: 1000 steps, LDM linear 0.00085 -> 0.012)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    # LDM "linear" = linspace(sqrt(b0), sqrt(bT))**2, which diffusers calls scaled_linear.
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"
    # Branches whose UNet predicts v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022) instead.
    # The eps loss weights the clean-latent error by SNR, next to nothing at high noise, so a
    # translation diffuser learns slowly what its concat source determines; v weights it by SNR + 1.
    # The engine turns v into eps, so samplers and guidance are the same for every branch.
    v_prediction: tuple[str, ...] = ()


@dataclass
class ModelConfig:
    """The whole MedM2G model. One image config is shared by every imaging branch."""

    preset: str = "full"
    modalities: tuple[str, ...] = ("text", "xray", "ct", "mri")
    image: ImageBranchConfig = field(default_factory=ImageBranchConfig)
    text: TextBranchConfig = field(default_factory=TextBranchConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    cross_attention_dim: int = 768
    conditioning: ConditioningMode = "context"
    # Context encoder: hidden width and the side of the token grid (grid**2 spatial tokens).
    context_hidden: int = 256
    context_grid: int = 8
    # Source slots stacked on the noisy latent in "concat" mode (t1+t2 -> pd needs two).
    concat_slots: int = 2
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    @property
    def image_modalities(self) -> tuple[str, ...]:
        """The imaging branches present, in registry order."""
        return tuple(m for m in modalities.IMAGE_MODALITIES if m in self.modalities)

    @property
    def has_text(self) -> bool:
        """Whether the text branch is present."""
        return "text" in self.modalities

    def component_names(self) -> list[str]:
        """Folder names of every component a model with this config has, in a stable order."""
        names: list[str] = []
        for m in self.image_modalities:
            names += [f"vae_{m}", f"unet_{m}", f"image_encoder_{m}"]
        if self.has_text:
            names += ["text_vae", "unet_text"]
        names.append("text_encoder")
        for m in self.modalities:
            names += [f"context_encoder_{m}", f"conditioner_{m}"]
        return names

    def validate(self) -> ModelConfig:
        """Check the configuration; raise :class:`ConfigError` naming the bad field."""
        for m in self.modalities:
            modalities.get(m)
        bad = [b for b in self.scheduler.v_prediction if b not in self.modalities]
        if bad:
            raise ConfigError(f"scheduler.v_prediction: the model has no branch {', '.join(map(repr, bad))}",
                              f"use some of: {', '.join(self.modalities)}")
        if self.conditioning not in ("context", "concat"):
            raise ConfigError(f"unknown conditioning mode '{self.conditioning}'", "use 'context' or 'concat'")
        img = self.image
        if len(img.attention_levels) != len(img.block_out_channels):
            raise ConfigError("image.attention_levels must have one entry per UNet level",
                              f"give {len(img.block_out_channels)} booleans")
        if img.head_channels is not None and any(c % img.head_channels for c in img.block_out_channels):
            raise ConfigError(f"image.head_channels {img.head_channels} does not divide the UNet widths "
                              f"{list(img.block_out_channels)}", "choose a divisor (e.g. 32) or null for num_heads")
        if img.image_size % img.autoencoder.downsample_factor:
            raise ConfigError(f"image_size {img.image_size} is not a multiple of the autoencoder factor "
                              f"{img.autoencoder.downsample_factor}", "choose another image size")
        if self.text.latent_dim % self.text.unet_positions:
            raise ConfigError("text.latent_dim must be divisible by text.unet_positions",
                              "change text.unet_positions")
        if len(self.text.unet_attention_levels) != len(self.text.unet_mult):
            raise ConfigError("text.unet_attention_levels must match text.unet_mult", "give one boolean per level")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config written by :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return _from_dict(cls, data).validate()


SAMPLERS = ("ddim", "dpm++", "sde-dpm++", "unipc")
"""Samplers of :class:`SampleConfig`: DDIM; DPM-Solver++ 2M and UniPC (multistep ODE solvers);
SDE-DPM-Solver++ 2M (stochastic, seeded per sample like DDIM with eta > 0)."""
SPACINGS = ("leading", "linspace", "trailing", "karras")
"""Timestep spacings of :class:`SampleConfig` (``karras`` only for the multistep solvers)."""


@dataclass
class SampleConfig:
    """Sampler settings (Table A3 defaults: DDIM, 50 steps, eta 1.0, guidance 2.0)."""

    steps: int = 50
    eta: float = 1.0
    guidance: float = 2.0
    sampler: Literal["ddim", "dpm++", "sde-dpm++", "unipc"] = "ddim"
    seed: int = 0
    # Timestep spacing: None = the sampler's own (DDIM "leading" as in SD, DPM-Solver++/UniPC
    # "linspace"); "karras" (DPM-Solver++/UniPC only) or "leading"/"linspace"/"trailing".
    spacing: str | None = None
    # Fraction of the steps that use classifier-free guidance; later steps run the conditional
    # rows only (guidance 1, half the UNet rows). 1.0 = guided throughout (Table A3).
    guidance_stop: float = 1.0

    def validate(self) -> SampleConfig:
        """Check ranges; raise :class:`ConfigError`."""
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler '{self.sampler}'", f"use one of: {', '.join(SAMPLERS)}")
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise ConfigError(f"unknown timestep spacing '{self.spacing}'", f"use one of: {', '.join(SPACINGS)}")
        if self.spacing == "karras" and self.sampler == "ddim":
            raise ConfigError("--spacing karras needs a multistep sampler (dpm++, sde-dpm++, unipc)",
                              "use --sampler dpm++ (or another spacing with ddim)")
        if not 0.0 <= self.guidance_stop <= 1.0:
            raise ConfigError(f"--guidance-stop {self.guidance_stop} is out of range",
                              "use a fraction of the steps in [0, 1] (1 = guided throughout)")
        if not 1 <= self.steps <= 1000:
            raise ConfigError(f"--steps {self.steps} is out of range", "use 1..1000 (50 is the default)")
        if self.eta < 0:
            raise ConfigError(f"--eta {self.eta} is negative", "use a value in [0, 1]")
        if self.guidance < 0:
            raise ConfigError(f"--guidance {self.guidance} is negative", "use a value >= 0 (1 = no guidance)")
        return self


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}", "check the config JSON")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}", "check the spelling")
    kwargs: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None:
            kwargs[name] = _from_dict(sub, value)
        elif isinstance(value, list) and "tuple" in str(hints[name]):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_NESTED: dict[tuple[str, str], type] = {
    ("ModelConfig", "image"): ImageBranchConfig,
    ("ModelConfig", "text"): TextBranchConfig,
    ("ModelConfig", "encoders"): EncoderConfig,
    ("ModelConfig", "scheduler"): SchedulerConfig,
    ("ImageBranchConfig", "autoencoder"): AutoencoderConfig,
}


def _full() -> ModelConfig:
    # Table A3 + ViT-B prompt encoders (Table A10: the supplement's comparisons use ViT-B)
    return ModelConfig(preset="full", encoders=clip_encoders("vit-b"))


def _small() -> ModelConfig:
    return ModelConfig(
        preset="small",
        image=ImageBranchConfig(
            image_size=64,
            autoencoder=AutoencoderConfig(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16),
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            attention_levels=(False, True, True),
            num_heads=4,
            norm_num_groups=16,
        ),
        text=TextBranchConfig(
            latent_dim=128, encoder_hidden=128, encoder_layers=2, encoder_heads=4,
            decoder_hidden=128, decoder_layers=2, decoder_heads=4,
            unet_channels=64, unet_mult=(1, 2), unet_layers=1, unet_attention_levels=(True, True),
            unet_positions=4, unet_heads=4, unet_norm_groups=16,
        ),
        encoders=EncoderConfig(
            embed_dim=128, vocab_size=2048, text_hidden=128, text_layers=2, text_heads=4,
            vision_hidden=128, vision_layers=2, vision_heads=4, vision_image_size=64, vision_patch_size=8,
        ),
        cross_attention_dim=128,
        context_hidden=64,
        context_grid=8,
    )


def _tiny() -> ModelConfig:
    return ModelConfig(
        preset="tiny",
        image=ImageBranchConfig(
            image_size=32,
            autoencoder=AutoencoderConfig(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8),
            block_out_channels=(16, 32),
            layers_per_block=1,
            attention_levels=(True, True),
            num_heads=2,
            norm_num_groups=8,
        ),
        text=TextBranchConfig(
            latent_dim=32, max_length=24, encoder_hidden=32, encoder_layers=1, encoder_heads=2,
            decoder_hidden=32, decoder_layers=2, decoder_heads=2,
            unet_channels=16, unet_mult=(1, 2), unet_layers=1, unet_attention_levels=(True, True),
            unet_positions=4, unet_heads=2, unet_norm_groups=8,
        ),
        encoders=EncoderConfig(
            embed_dim=32, vocab_size=512, text_hidden=32, text_layers=1, text_heads=2, text_max_positions=64,
            vision_hidden=32, vision_layers=1, vision_heads=2, vision_image_size=32, vision_patch_size=8,
        ),
        cross_attention_dim=32,
        context_hidden=16,
        context_grid=4,
    )


PRESETS: dict[str, Any] = {"tiny": _tiny, "small": _small, "full": _full}
"""Preset name -> factory of a fresh :class:`ModelConfig`."""


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset ``name`` (tiny|small|full) with top-level field ``overrides`` applied.

    Nested fields can be overridden with dotted names through a dict, e.g.
    ``model_preset("tiny", modalities=("text", "xray"), conditioning="concat")`` or
    ``model_preset("small", **{"image.image_size": 128})``.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'", f"use one of: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    scale = overrides.get("encoders.scale")
    if scale:  # a named CLIP size first, so field overrides given next to it still apply
        cfg.encoders = clip_encoders(str(scale), cfg.encoders)
    for key, value in overrides.items():
        target: Any = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            target = getattr(target, p)
        if not hasattr(target, parts[-1]):
            raise ConfigError(f"unknown config field '{key}'", "check the spelling")
        if isinstance(value, list):
            value = tuple(value)
        setattr(target, parts[-1], value)
    if "modalities" in overrides:
        cfg.modalities = tuple(m for m in modalities.MODALITIES if m in {modalities.get(x).name for x in cfg.modalities})
    return cfg.validate()
