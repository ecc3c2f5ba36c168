"""Loaders for the text branch's pretrained initialisation (Table A3 "weight initialization"):
a local Versatile Diffusion text UNet and a local Optimus text VAE. Safetensors only; never a pickle.

* **Versatile Diffusion** — the diffusers layout of ``shi-labs/versatile-diffusion``: a folder with
  ``text_unet/config.json`` (``UNetFlatConditionModel``) and its ``*.safetensors`` (or that subfolder
  itself). :func:`load_versatile_text_unet` returns diffusers' own ``UNetFlatConditionModel``;
  :class:`VersatileTextUNet` calls it with the MedM2G text-UNet interface (latent vectors [B, D] in,
  epsilon [B, D] out, condition tokens [B, N, cross]).
* **Optimus** — the released ``checkpoint-encoder-*`` / ``checkpoint-decoder-*`` pair converted to
  safetensors: ``encoder/`` holds ``BertForLatentConnector`` weights (``bert.*`` and the bias-free
  ``linear`` to 2 x latent: mean and log-variance) and a BERT ``config.json``; ``decoder/`` holds
  ``GPT2ForLatentConnector`` weights (``transformer.*``, the bias-free ``transformer.linear`` latent ->
  past key/value of every layer, ``transformer.linear_emb`` latent -> embedding, ``lm_head``) and a
  GPT-2 ``config.json``. :func:`load_optimus` maps them onto the engine's
  ``BertModel``/``GPT2LMHeadModel``/:class:`LatentHeads` (the heads' biases are zero, as Optimus has
  none), which the text VAE uses exactly as Optimus does (engine/text_vae.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import WeightsError


def _safetensors(folder: Path, what: str) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``*.safetensors`` files; pickled checkpoints are refused."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")] if folder.is_dir() else []
        raise WeightsError(f"{what} folder '{folder}' has no .safetensors weights"
                           + (f" (only {', '.join(pickles)})" if pickles else ""),
                           "convert the checkpoint to safetensors first; pickled weights are never loaded")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises its own error type for corrupt headers
            raise WeightsError(f"cannot read '{f}': {exc}", "the file is corrupt; convert the checkpoint again") from exc
    return out


def _config(folder: Path, what: str) -> dict[str, Any]:
    f = folder / "config.json"
    if not f.is_file():
        raise WeightsError(f"{what} folder '{folder}' lacks config.json", f"give the {what} folder with its config.json")
    try:
        conf = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{f}' is not valid JSON ({exc.msg})", "restore the config file") from exc
    if not isinstance(conf, dict):
        raise WeightsError(f"'{f}' does not hold a mapping", "restore the config file")
    return conf


# ------------------------------------------------------------------------------------ Versatile


def load_versatile_text_unet(path: str | Path) -> Any:
    """The text UNet of a local Versatile Diffusion folder (diffusers layout), as diffusers' class."""
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    root = Path(path)
    folder = root / "text_unet" if (root / "text_unet").is_dir() else root
    if not folder.is_dir():
        raise WeightsError(f"Versatile Diffusion folder '{root}' does not exist", "give the local folder (with text_unet/)")
    conf = _config(folder, "Versatile Diffusion text UNet")
    if conf.get("_class_name") != "UNetFlatConditionModel":
        raise WeightsError(f"'{folder}' holds a {conf.get('_class_name') or 'unknown'} model, not VD's text UNet",
                           "give the text_unet folder of Versatile Diffusion (class UNetFlatConditionModel)")
    state = _safetensors(folder, "Versatile Diffusion text UNet")
    model = UNetFlatConditionModel.from_config({k: v for k, v in conf.items() if not k.startswith("_")})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"'{folder}' does not match its config ({len(missing)} missing, {len(unexpected)} unexpected "
                           f"tensors, e.g. {(missing or unexpected)[0]})", "the folder is incomplete or not VD's text UNet")
    return model.eval()


class VersatileTextUNet(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: ModelMixin/ConfigMixin type config_name differently
    """VD's ``UNetFlatConditionModel`` behind the MedM2G text-UNet call: ``(z [B, D], t, tokens) -> eps [B, D]``.

    A model-folder component (``unet_text``) like :class:`~medm2g_cli.engine.unet.FlatUNet`: its
    ``config.json`` holds VD's UNet config, its safetensors VD's weights under ``unet.``.
    """

    @register_to_config
    def __init__(self, unet_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (
            UNetFlatConditionModel,
        )

        self.unet = UNetFlatConditionModel.from_config(dict(unet_config or {}))

    @classmethod
    def from_unet(cls, unet: Any) -> VersatileTextUNet:
        """Wrap a loaded ``UNetFlatConditionModel`` (its weights copied)."""
        out = cls(unet_config={k: v for k, v in dict(unet.config).items() if not k.startswith("_")})
        out.unet.load_state_dict(unet.state_dict())
        return out

    @property
    def latent_dim(self) -> int:
        """Width of the latent vector the UNet denoises."""
        dims = self.unet.config.in_channels
        return int(dims[0] if isinstance(dims, (list, tuple)) else dims)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Epsilon for latent vectors ``sample`` [B, D] at ``timestep`` given tokens [B, N, cross]."""
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        out = self.unet(sample.reshape(b, -1, 1, 1), t, encoder_hidden_states=encoder_hidden_states).sample
        return out.reshape(b, -1)


def check_versatile_fits(unet: Any, latent_dim: int, cross_attention_dim: int, path: Path) -> None:
    """Refuse a VD text UNet whose latent or cross-attention width differs from the model's."""
    dims = unet.config.in_channels
    d = int(dims[0] if isinstance(dims, (list, tuple)) else dims)
    if d != latent_dim or int(unet.config.cross_attention_dim) != cross_attention_dim:
        raise WeightsError(f"Versatile Diffusion text UNet in '{path}' is {d}-d with cross-attention "
                           f"{unet.config.cross_attention_dim}, the model's text branch {latent_dim}-d with {cross_attention_dim}",
                           "use a preset with the same widths (full: 768 and 768) or give the matching folder")


# --------------------------------------------------------------------------------------- Optimus


def optimus_dims(path: str | Path) -> dict[str, int]:
    """The text-branch sizes of a local Optimus folder (configs + the latent connector's shape), read
    without loading its weights: ``TextBranchConfig`` field -> value."""
    from safetensors import safe_open

    root = Path(path)
    enc_dir, dec_dir = root / "encoder", root / "decoder"
    b, g = _config(enc_dir, "Optimus encoder"), _config(dec_dir, "Optimus decoder")
    latent = None
    for f in sorted(enc_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            if "linear.weight" in fh.keys():
                latent = int(fh.get_slice("linear.weight").get_shape()[0]) // 2
    if latent is None:
        raise WeightsError(f"'{enc_dir}' has no 'linear.weight' in safetensors: not an Optimus encoder",
                           "give the converted Optimus checkpoint (BertForLatentConnector)")
    try:
        return {"latent_dim": latent, "encoder_hidden": int(b["hidden_size"]), "encoder_layers": int(b["num_hidden_layers"]),
                "encoder_heads": int(b["num_attention_heads"]), "decoder_hidden": int(g["n_embd"]),
                "decoder_layers": int(g["n_layer"]), "decoder_heads": int(g["n_head"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"Optimus configs in '{root}' lack {exc}", "give BERT (encoder/) and GPT-2 (decoder/) configs") from exc


def load_optimus(path: str | Path) -> tuple[Any, Any, Any]:
    """``(BertModel, GPT2LMHeadModel, LatentHeads)`` from a local Optimus folder (see module docstring)."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    from .text_vae import LatentHeads

    root = Path(path)
    if not root.is_dir():
        raise WeightsError(f"Optimus folder '{root}' does not exist", "give a local folder with encoder/ and decoder/")
    enc_dir, dec_dir = root / "encoder", root / "decoder"
    for d in (enc_dir, dec_dir):
        if not d.is_dir():
            raise WeightsError(f"Optimus folder '{root}' lacks {d.name}/",
                               "expected encoder/ (BertForLatentConnector) and decoder/ (GPT2ForLatentConnector)")
    enc_state, dec_state = _safetensors(enc_dir, "Optimus encoder"), _safetensors(dec_dir, "Optimus decoder")
    bconf, gconf = _config(enc_dir, "Optimus encoder"), _config(dec_dir, "Optimus decoder")
    for key, state, where in (("linear.weight", enc_state, enc_dir), ("transformer.linear.weight", dec_state, dec_dir),
                              ("transformer.linear_emb.weight", dec_state, dec_dir)):
        if key not in state:
            raise WeightsError(f"'{where}' has no '{key}': not an Optimus latent connector",
                               "give the converted Optimus checkpoint (BertForLatentConnector / GPT2ForLatentConnector)")
    bert = BertModel(BertConfig(**{k: v for k, v in bconf.items() if not k.startswith("_")}))
    gpt2 = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in gconf.items() if not k.startswith("_")}))
    _load(bert, {k.removeprefix("bert."): v for k, v in enc_state.items() if k.startswith("bert.")}, enc_dir)
    dec = {k: v for k, v in dec_state.items() if not k.startswith(("transformer.linear.", "transformer.linear_emb."))}
    dec.setdefault("lm_head.weight", dec_state.get("transformer.wte.weight", torch.empty(0)))  # tied in GPT-2
    _load(gpt2, dec, dec_dir)
    to_moments, to_past, to_embed = (enc_state["linear.weight"], dec_state["transformer.linear.weight"],
                                     dec_state["transformer.linear_emb.weight"])
    latent = to_moments.shape[0] // 2
    heads = LatentHeads(encoder_hidden=bert.config.hidden_size, latent_dim=latent,
                        decoder_hidden=gpt2.config.n_embd, decoder_layers=gpt2.config.n_layer)
    expect = {"to_moments": (2 * latent, bert.config.hidden_size), "to_past": (gpt2.config.n_layer * gpt2.config.n_embd, latent),
              "to_embed": (gpt2.config.n_embd, latent)}
    with torch.no_grad():
        for name, w in (("to_moments", to_moments), ("to_past", to_past), ("to_embed", to_embed)):
            if tuple(w.shape) != expect[name]:
                raise WeightsError(f"Optimus latent connector for {name} has shape {tuple(w.shape)}, expected "
                                   f"{expect[name]} from the configs", "the encoder and decoder do not belong together")
            lin = getattr(heads, name)
            lin.weight.copy_(w)
            lin.bias.zero_()  # Optimus' connectors have no bias
    return bert.eval(), gpt2.eval(), heads.eval()


def _load(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Strict load, except the attention-mask buffers old GPT-2 checkpoints carry (``attn.bias``)."""
    state = {k: v for k, v in state.items() if not k.endswith(("attn.bias", "attn.masked_bias"))}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(("attn.bias", "attn.masked_bias"))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(f"'{where}' does not match its config.json ({len(missing)} missing, {len(unexpected)} "
                           f"unexpected tensors, e.g. {(missing or unexpected)[0]})", "the folder is incomplete or of another model")
    module.load_state_dict(state, strict=False)
