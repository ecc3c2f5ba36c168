"""Model folders: save, load, verify and describe.

Layout (every component folder loads on its own with diffusers/transformers ``from_pretrained``)::

    model_index.json            component -> [library, class]
    medm2g.json                 version, modalities, preset, config, scale factors, conditioning,
                                sha256 of every other file, provenance
    tokenizer/                  the text encoder's tokenizer
    text_encoder/               transformers CLIPTextModelWithProjection
    vae_<m>/ unet_<m>/          diffusers AutoencoderKL / UNet2DConditionModel   (m = xray, ct, mri)
    image_encoder_<m>/          transformers CLIPVisionModelWithProjection (1 channel)
    text_vae/encoder/ decoder/  transformers BertModel / GPT2LMHeadModel
    text_vae/latent/            medm2g_cli.engine.text_vae.LatentHeads (diffusers ModelMixin)
    text_vae/tokenizer_encoder/ text_vae/tokenizer_decoder/
    unet_text/                  medm2g_cli.engine.unet.FlatUNet
    context_encoder_<m>/ conditioner_<m>/   medm2g_cli.engine.unet.ContextEncoder / Conditioner

Weights are safetensors only; a folder holding a pickled checkpoint (.bin/.pt/.pth/.ckpt/.pkl)
is refused, never loaded.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import ModelConfig
from ..errors import WeightsError
from ..io.atomic import atomic_dir, atomic_path

FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "medm2g.json")


def _classes() -> dict[str, tuple[str, str]]:
    return {
        "vae": ("diffusers", "AutoencoderKL"),
        "unet": ("diffusers", "UNet2DConditionModel"),
        "image_encoder": ("transformers", "CLIPVisionModelWithProjection"),
        "text_encoder": ("transformers", "CLIPTextModelWithProjection"),
        "unet_text": ("medm2g_cli.engine.unet", "FlatUNet"),
        "context_encoder": ("medm2g_cli.engine.unet", "ContextEncoder"),
        "conditioner": ("medm2g_cli.engine.unet", "Conditioner"),
        "text_vae": ("medm2g_cli.engine.text_vae", "TextVAE"),
    }


def _class_of(name: str, module: Any = None) -> tuple[str, str]:
    if type(module).__name__ == "VersatileTextUNet":  # unet_text initialised from Versatile Diffusion
        return ("medm2g_cli.engine.transfer", "VersatileTextUNet")
    table = _classes()
    if name in table:
        return table[name]
    return table[name.rsplit("_", 1)[0]]


def _quiet() -> None:
    # The libraries' per-shard progress bars would clutter the CLI's own output on stderr.
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def save_model(model: Any, path: Path, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (an interrupted save leaves nothing behind)."""
    _quiet()
    with atomic_dir(path, overwrite=overwrite) as tmp:
        for name, module in model.components().items():
            if name == "text_vae":
                module.encoder.save_pretrained(tmp / name / "encoder")
                module.decoder.save_pretrained(tmp / name / "decoder")
                module.heads.save_pretrained(tmp / name / "latent")
                module.enc_tokenizer.save_pretrained(tmp / name / "tokenizer_encoder")
                module.dec_tokenizer.save_pretrained(tmp / name / "tokenizer_decoder")
            else:
                module.save_pretrained(tmp / name)
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        bad = [p for p in tmp.rglob("*") if p.suffix in PICKLE_SUFFIXES]
        if bad:  # a library fell back to pickle: refuse to write a folder we would refuse to load
            raise WeightsError(f"saving produced pickled files: {', '.join(p.name for p in bad)}",
                               "update diffusers/transformers (safetensors serialisation is required)")
        index: dict[str, str | list[str]] = {"_class_name": "MedM2G", "_medm2g_version": __version__}
        index.update({n: list(_class_of(n, m)) for n, m in model.components().items()})
        index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        meta = {
            "format_version": FORMAT_VERSION,
            "version": __version__,
            "preset": model.config.preset,
            "modalities": list(model.config.modalities),
            "conditioning": model.config.conditioning,
            "scale_factors": dict(model.scale_factors),
            "config": model.config.to_dict(),
            "provenance": {**model.provenance, "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
            "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in _files(tmp)},
        }
        (tmp / "medm2g.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """``medm2g.json`` of a model folder; :class:`WeightsError` if the folder is not one."""
    if not path.is_dir():
        raise WeightsError(f"model folder '{path}' does not exist",
                           "create one with `medm2g weights init` or pass --weights DIR")
    meta_path = path / "medm2g.json"
    if not meta_path.is_file():
        raise WeightsError(f"'{path}' is not a medm2g model folder (no medm2g.json)",
                           "pass a folder written by `medm2g weights init` or `medm2g pretrain`")
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{meta_path}' is not valid JSON ({exc.msg})", "restore the model folder") from exc


def find_pickles(path: Path) -> list[str]:
    """Relative paths of pickled checkpoint files in a folder (which are never loaded)."""
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)


def verify_folder(path: Path) -> dict[str, list[str]]:
    """Compare every file with the sha256 in ``medm2g.json``.

    Returns ``{"missing": [...], "mismatched": [...], "unexpected": [...], "pickled": [...]}``
    (relative paths); all empty means the folder is intact.
    """
    meta = read_meta(path)
    recorded: dict[str, str] = meta.get("sha256", {})
    present = {p.relative_to(path).as_posix(): p for p in _files(path)}
    return {
        "missing": sorted(k for k in recorded if k not in present),
        "mismatched": sorted(k for k, h in recorded.items() if k in present and sha256_file(present[k]) != h),
        # a model card (README.md) may be added to a folder after training; it is never loaded
        "unexpected": sorted(k for k in present if k not in recorded and k != "README.md"),
        "pickled": find_pickles(path),
    }


def add_file_hash(path: Path, rel: str) -> None:
    """Record the sha256 of a file added to a saved model folder (the latent reference of ``medm2g
    weights calibrate``) in its ``medm2g.json``, atomically, so ``weights verify``/``install``/``export``
    check and carry it. Other entries keep their order and bytes."""
    meta = read_meta(path)
    meta.setdefault("sha256", {})[rel] = sha256_file(path / rel)
    with atomic_path(path / "medm2g.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def load_model(cls: Any, path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               verify: bool = True) -> Any:
    """Load a model folder written by :func:`save_model`."""
    # From the subpackage: mypy types the top-level ``diffusers`` names as torch-less dummy classes.
    from diffusers.models import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        BertModel,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
        GPT2LMHeadModel,
    )

    from .text_vae import LatentHeads, TextVAE
    from .tokenizers import load_tokenizer
    from .transfer import VersatileTextUNet
    from .unet import Conditioner, ContextEncoder, FlatUNet

    _quiet()
    meta = read_meta(path)
    pickled = find_pickles(path)
    if pickled:
        raise WeightsError(f"'{path}' contains pickled checkpoint files ({', '.join(pickled[:3])})",
                           "pickles can run arbitrary code and are never loaded; remove them or convert to safetensors")
    cfg = ModelConfig.from_dict(meta["config"])
    for name in cfg.component_names():
        if not (path / name).is_dir():
            raise WeightsError(f"model folder '{path}' lacks component '{name}'",
                               "the folder is incomplete; copy it again or re-create it")
    problems = verify_folder(path)
    if problems["missing"]:
        raise WeightsError(f"model folder '{path}' lacks files: {', '.join(problems['missing'][:5])}",
                           "the folder is incomplete; copy it again")
    if verify and problems["mismatched"]:
        raise WeightsError(f"sha256 mismatch in '{path}': {', '.join(problems['mismatched'][:5])}",
                           "the weights were modified or corrupted; restore them or pass --skip-verify")

    def load(kind: Any, sub: str) -> Any:
        try:
            return kind.from_pretrained(str(path / sub), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"could not load component '{sub}' from '{path}': {' '.join(str(exc).split())[:200]}",
                               "the folder is damaged; restore it") from exc

    kinds = {"AutoencoderKL": AutoencoderKL, "UNet2DConditionModel": UNet2DConditionModel,
             "CLIPVisionModelWithProjection": CLIPVisionModelWithProjection,
             "CLIPTextModelWithProjection": CLIPTextModelWithProjection, "FlatUNet": FlatUNet,
             "ContextEncoder": ContextEncoder, "Conditioner": Conditioner, "VersatileTextUNet": VersatileTextUNet}
    try:  # which class each component was saved as (unet_text: FlatUNet or VersatileTextUNet)
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        index = {}
    parts: dict[str, Any] = {}
    for name in cfg.component_names():
        if name == "text_vae":
            enc_tok = load_tokenizer(str(path / name / "tokenizer_encoder"))
            dec_tok = load_tokenizer(str(path / name / "tokenizer_decoder"))
            parts[name] = TextVAE(load(BertModel, f"{name}/encoder"), load(GPT2LMHeadModel, f"{name}/decoder"),
                                  load(LatentHeads, f"{name}/latent"), enc_tok, dec_tok,
                                  cfg.text.max_length, cfg.text.kl_beta)
        else:
            listed = index.get(name) if isinstance(index, dict) else None
            kind = listed[1] if isinstance(listed, list) and len(listed) == 2 and listed[1] in kinds else _class_of(name)[1]
            parts[name] = load(kinds[kind], name)
    tokenizer = load_tokenizer(str(path / "tokenizer"))
    prov = dict(meta.get("provenance", {}))
    prov["loaded_from"] = str(path)
    model = cls(cfg, parts, tokenizer, scale_factors=meta.get("scale_factors"), provenance=prov)
    with torch.no_grad():
        # Copy out of the (memory-mapped) safetensors buffers: fresh, aligned storage makes CPU
        # kernels take the same code paths as for the saved model, so outputs match it bit for
        # bit (mmapped tensors gave ~1e-7 differences), and the files are no longer held open.
        for t in [*model.parameters(), *model.buffers()]:
            t.data = t.data.clone()
    return model.to(device=device, dtype=dtype).eval()


def parameter_counts(model: Any) -> dict[str, Any]:
    """Parameter counts per component and per modality (component suffix; shared ones under ``shared``)."""
    # "diffusers": the SD-comparable size of each imaging branch, UNet + autoencoder
    # (SD-1.5: 859.5M + 83.7M).
    return _group(_component_counts(model.components()), model.config)


def _component_counts(parts: dict[str, Any]) -> dict[str, int]:
    return {n: sum(p.numel() for p in m.parameters()) for n, m in parts.items()}


def safetensors_counts(path: Path) -> dict[str, int]:
    """Parameter counts per component folder, read from the safetensors headers (no weights loaded)."""
    import struct

    counts: dict[str, int] = {}
    for f in sorted(path.rglob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        total = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            size = 1
            for d in info["shape"]:
                size *= d
            total += size
        comp = f.relative_to(path).parts[0]
        counts[comp] = counts.get(comp, 0) + total
    return counts


def _group(counts: dict[str, int], cfg: ModelConfig) -> dict[str, Any]:
    per_mod: dict[str, int] = {}
    for n, c in counts.items():
        suffix = n.rsplit("_", 1)[-1]
        mod = suffix if suffix in cfg.modalities else ("text" if n == "text_vae" else "shared")
        per_mod[mod] = per_mod.get(mod, 0) + c
    diffusers = {m: counts.get(f"unet_{m}", 0) + counts.get(f"vae_{m}", 0) for m in cfg.image_modalities}
    return {"components": counts, "modalities": per_mod, "diffusers": diffusers, "total": sum(counts.values())}


def describe(path: Path | None = None, preset: str | None = None) -> dict[str, Any]:
    """What ``weights inspect`` reports: components, parameter counts, config, scale factors, hashes.

    With ``preset`` the model is built on the meta device (no weights allocated).
    """
    from ..config import model_preset
    from .builder import build_parts

    if preset is not None:
        cfg = model_preset(preset).validate()
        parts, _ = build_parts(cfg, device="meta")
        info: dict[str, Any] = {"preset": preset, "source": "meta device (no weights allocated)"}
        hashes: dict[str, str] = {}
        scale = {m: 1.0 for m in cfg.modalities}  # a fresh model's factors
        counts = _group(_component_counts(parts), cfg)
    else:
        assert path is not None
        meta = read_meta(path)
        cfg = ModelConfig.from_dict(meta["config"])
        info = {"path": str(path), "preset": meta.get("preset"), "version": meta.get("version"),
                "license": meta.get("license"), "intended_use": meta.get("intended_use"),
                "provenance": meta.get("provenance", {}), "source": "safetensors headers"}
        hashes = meta.get("sha256", {})
        scale = meta.get("scale_factors", {})
        counts = _group(safetensors_counts(path), cfg)
    info.update({
        "modalities": list(cfg.modalities),
        "conditioning": cfg.conditioning,
        "scale_factors": scale,
        "parameters": counts,
        "config": cfg.to_dict(),
        "sha256": hashes,
    })
    return info
