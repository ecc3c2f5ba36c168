"""A MedM2G initialised from local pretrained folders (Stable Diffusion 1.5 diffusers layout, CLIP,
BERT, GPT-2, Optimus, Versatile Diffusion). Never downloads anything.

The fresh components come from :mod:`medm2g_cli.engine.builder`; this module replaces those the
given folders provide and returns the assembled :class:`~medm2g_cli.engine.model.MedM2G`.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import WeightsError
from .autoencoder import adapt_rgb_autoencoder
from .builder import build_parts
from .encoders import adapt_rgb_vision_encoder
from .model import MedM2G
from .tokenizers import load_tokenizer


def _folder(path: Path | str, what: str, must: tuple[str, ...]) -> Path:
    p = Path(path)
    if p.is_file():
        raise WeightsError(f"{what}: '{p}' is a file, a folder in save_pretrained layout is expected",
                           "convert a single-file checkpoint once with diffusers/transformers "
                           "(e.g. StableDiffusionPipeline.from_single_file(...).save_pretrained(DIR)) and pass DIR")
    if not p.is_dir():
        raise WeightsError(f"{what} folder '{p}' does not exist", f"give a local folder with {', '.join(must)}")
    missing = [m for m in must if not (p / m).exists()]
    if missing:
        raise WeightsError(f"{what} folder '{p}' lacks {', '.join(missing)}",
                           f"expected a {what} folder saved with save_pretrained ({', '.join(must)})")
    return p


def _refuse_pickles(p: Path, what: str) -> None:
    if not any(p.rglob("*.safetensors")):
        raise WeightsError(f"{what} folder '{p}' has no .safetensors weights",
                           "convert the checkpoint to safetensors first; pickled weights are never loaded")


def _kind(conf: dict, key: str, expected: tuple[str, ...], what: str, path: Path) -> None:
    got = conf.get(key)
    if got not in expected:
        raise WeightsError(f"'{path}' holds a {got or 'unknown'} model, not {what}",
                           f"give a {what} folder (config {key} {' or '.join(expected)})")


def clip_pixel_stats(path: Path) -> tuple[list[float], list[float]]:
    """The image mean/std of a CLIP folder's ``preprocessor_config.json`` (OpenAI's when absent)."""
    import json

    from .encoders import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

    mean, std = list(CLIP_PIXEL_MEAN), list(CLIP_PIXEL_STD)
    f = path / "preprocessor_config.json"
    if f.is_file():
        try:
            conf = json.loads(f.read_text(encoding="utf-8"))
            mean, std = list(conf.get("image_mean", mean)), list(conf.get("image_std", std))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise WeightsError(f"'{f}' is not valid JSON", "restore the CLIP folder's preprocessor_config.json") from exc
    if len(mean) != 3 or len(std) != 3:
        raise WeightsError(f"'{f}' does not give three image_mean/image_std values", "use an RGB CLIP folder")
    return mean, std


def pretrained_config(cfg: ModelConfig, sd15: Path | None = None, clip: Path | None = None,
                      bert: Path | None = None, gpt2: Path | None = None, optimus: Path | None = None) -> ModelConfig:
    """``cfg`` with the architecture fields the given pretrained folders dictate."""
    import json

    cfg = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image), text=dataclasses.replace(cfg.text),
                              encoders=dataclasses.replace(cfg.encoders))
    if sd15 is not None:
        root = _folder(sd15, "Stable Diffusion 1.5", ("unet/config.json", "vae/config.json"))
        u = json.loads((root / "unet/config.json").read_text())
        v = json.loads((root / "vae/config.json").read_text())
        _kind(u, "_class_name", ("UNet2DConditionModel",), "a Stable Diffusion UNet", root / "unet")
        _kind(v, "_class_name", ("AutoencoderKL",), "a Stable Diffusion VAE", root / "vae")
        ae = dataclasses.replace(cfg.image.autoencoder, block_out_channels=tuple(v["block_out_channels"]),
                                 layers_per_block=v.get("layers_per_block", 1),
                                 latent_channels=v.get("latent_channels", 4),
                                 norm_num_groups=v.get("norm_num_groups", 32))
        heads = u.get("attention_head_dim", 8)
        cfg.image = dataclasses.replace(
            cfg.image, autoencoder=ae, block_out_channels=tuple(u["block_out_channels"]),
            layers_per_block=u.get("layers_per_block", 2),
            attention_levels=tuple("CrossAttn" in b for b in u["down_block_types"]),
            num_heads=heads if isinstance(heads, int) else heads[0],
            norm_num_groups=u.get("norm_num_groups", 32),
            image_size=u.get("sample_size", 64) * 2 ** (len(v["block_out_channels"]) - 1),
        )
        cfg.cross_attention_dim = u.get("cross_attention_dim", 768)
    if clip is not None:
        root = _folder(clip, "CLIP", ("config.json",))
        c = json.loads((root / "config.json").read_text())
        _kind(c, "model_type", ("clip",), "CLIP", root)
        tc, vc = c.get("text_config", {}), c.get("vision_config", {})
        cfg.encoders = dataclasses.replace(
            cfg.encoders, embed_dim=c.get("projection_dim", cfg.encoders.embed_dim),
            text_hidden=tc.get("hidden_size", 512), text_layers=tc.get("num_hidden_layers", 12),
            text_heads=tc.get("num_attention_heads", 8), text_max_positions=tc.get("max_position_embeddings", 77),
            vision_hidden=vc.get("hidden_size", 768), vision_layers=vc.get("num_hidden_layers", 12),
            vision_heads=vc.get("num_attention_heads", 12), vision_image_size=vc.get("image_size", 224),
            vision_patch_size=vc.get("patch_size", 32), scale="",
        )
    if bert is not None:
        c = json.loads((_folder(bert, "BERT", ("config.json",)) / "config.json").read_text())
        _kind(c, "model_type", ("bert",), "BERT", Path(bert))
        cfg.text = dataclasses.replace(cfg.text, encoder_hidden=c["hidden_size"], encoder_layers=c["num_hidden_layers"],
                                       encoder_heads=c["num_attention_heads"])
    if gpt2 is not None:
        c = json.loads((_folder(gpt2, "GPT-2", ("config.json",)) / "config.json").read_text())
        _kind(c, "model_type", ("gpt2",), "GPT-2", Path(gpt2))
        cfg.text = dataclasses.replace(cfg.text, decoder_hidden=c["n_embd"], decoder_layers=c["n_layer"],
                                       decoder_heads=c["n_head"])
    if optimus is not None:
        from .transfer import optimus_dims

        dims: dict[str, Any] = dict(optimus_dims(optimus))
        cfg.text = dataclasses.replace(cfg.text, **dims)
    return cfg.validate()


def init_from_pretrained(cfg: ModelConfig, seed: int = 0, sd15: Path | None = None, clip: Path | None = None,
                         bert: Path | None = None, gpt2: Path | None = None,
                         tokenizer_texts: list[str] | None = None, optimus: Path | None = None,
                         versatile: Path | None = None) -> MedM2G:
    """A MedM2G whose components come from local pretrained folders where given.

    ``sd15``: a diffusers-layout Stable Diffusion folder (``unet/``, ``vae/``); every imaging
    branch gets its UNet and autoencoder weights (autoencoder first/last convs adapted RGB -> 1
    channel, see :func:`adapt_rgb_autoencoder`; in ``concat`` mode the UNet's extra input channels
    start at zero). Context encoders and conditioners (cross-guidance) stay freshly initialised.
    ``clip``: a transformers CLIP folder (text encoder, RGB->1 vision encoders, tokenizer);
    ``bert``/``gpt2``: transformers folders for the text VAE encoder/decoder and their tokenizers;
    ``optimus``: a local Optimus folder (``encoder/``, ``decoder/`` with their tokenizers; see
    :mod:`medm2g_cli.engine.transfer`) for the whole text VAE, latent connectors included;
    ``versatile``: a local Versatile Diffusion folder whose ``text_unet/`` becomes the text diffuser.
    """
    # From the subpackage: mypy types the top-level ``diffusers`` names as torch-less dummy classes.
    from diffusers.models import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        BertModel,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
        GPT2LMHeadModel,
    )


    if optimus is not None and (bert is not None or gpt2 is not None):
        raise WeightsError("--optimus gives the whole text VAE; --bert/--gpt2 would replace half of it",
                           "pass either --optimus or --bert/--gpt2")
    cfg = pretrained_config(cfg, sd15, clip, bert, gpt2, optimus)
    toks: dict[str, Any] = {}
    if optimus is not None:
        bert, gpt2 = Path(optimus) / "encoder", Path(optimus) / "decoder"  # for their tokenizers
    for key, path in (("clip", clip), ("bert", bert), ("gpt2", gpt2)):
        if path is not None:
            try:
                toks[key] = load_tokenizer(str(path))
            except (OSError, ValueError) as exc:
                raise WeightsError(f"no tokenizer in {key} folder '{path}'",
                                   "the folder must hold the tokenizer files saved with save_pretrained") from exc
    parts, clip_tok = build_parts(cfg, seed=seed, tokenizer_texts=tokenizer_texts, tokenizers=toks or None)
    prov: dict[str, Any] = {"init": "pretrained", "seed": seed}

    def load(kind: Any, path: Path, what: str, **kw: Any) -> Any:
        _refuse_pickles(path, what)
        try:
            return kind.from_pretrained(str(path), local_files_only=True, use_safetensors=True, **kw)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"could not load {what} from '{path}': {exc}",
                               f"expected a {kind.__name__} folder saved with save_pretrained") from exc

    if sd15 is not None:
        root = Path(sd15)
        unet = load(UNet2DConditionModel, root / "unet", "Stable Diffusion UNet")
        vae = adapt_rgb_autoencoder(load(AutoencoderKL, root / "vae", "Stable Diffusion VAE"))
        state = dict(unet.state_dict())
        uconf = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        if cfg.conditioning == "concat":
            # concat mode: the extra source channels start at zero, so the model initially
            # behaves exactly like SD's UNet on the noisy latent alone
            w = state["conv_in.weight"]
            extra = w.new_zeros(w.shape[0], w.shape[1] * cfg.concat_slots, *w.shape[2:])
            state["conv_in.weight"] = torch.cat([w, extra], dim=1)
            uconf["in_channels"] = w.shape[1] * (1 + cfg.concat_slots)
        for m in cfg.image_modalities:
            # built from SD's own config (every architecture flag kept), then its weights loaded
            parts[f"unet_{m}"] = UNet2DConditionModel.from_config(uconf)
            parts[f"unet_{m}"].load_state_dict(state)
            parts[f"vae_{m}"] = copy.deepcopy(vae)
        prov["sd15"] = str(root)
    if clip is not None:
        from transformers import AutoConfig

        full = AutoConfig.from_pretrained(str(clip), local_files_only=True)
        tconf, vconf = getattr(full, "text_config", full), getattr(full, "vision_config", full)
        if hasattr(full, "projection_dim"):  # a CLIPModel folder keeps projection_dim at the top level
            tconf.projection_dim = vconf.projection_dim = full.projection_dim
        parts["text_encoder"] = load(CLIPTextModelWithProjection, Path(clip), "CLIP text encoder", config=tconf)
        vision = adapt_rgb_vision_encoder(load(CLIPVisionModelWithProjection, Path(clip), "CLIP vision encoder",
                                               config=vconf), *clip_pixel_stats(Path(clip)))
        for m in cfg.image_modalities:
            parts[f"image_encoder_{m}"] = copy.deepcopy(vision)
        prov["clip"] = str(clip)
    if versatile is not None and cfg.has_text:
        from .transfer import VersatileTextUNet, check_versatile_fits, load_versatile_text_unet

        vd = load_versatile_text_unet(versatile)
        check_versatile_fits(vd, cfg.text.latent_dim, cfg.cross_attention_dim, Path(versatile))
        parts["unet_text"] = VersatileTextUNet.from_unet(vd)
        prov["versatile"] = str(versatile)
    if cfg.has_text and optimus is not None:
        from .transfer import load_optimus

        tv = parts["text_vae"]
        tv.encoder, tv.decoder, tv.heads = load_optimus(optimus)
        prov["optimus"] = str(optimus)
    elif cfg.has_text:
        tv = parts["text_vae"]
        if bert is not None:
            tv.encoder = load(BertModel, Path(bert), "BERT")
            prov["bert"] = str(bert)
        if gpt2 is not None:
            tv.decoder = load(GPT2LMHeadModel, Path(gpt2), "GPT-2")
            prov["gpt2"] = str(gpt2)
    return MedM2G(cfg, parts, clip_tok, provenance=prov)
