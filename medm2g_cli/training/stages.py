"""The four training stages of MedM2G and the cross-guided flows (method.md sections 1.2-1.5).

Each stage is a :class:`~medm2g_cli.training.interfaces.TrainJob`: it knows which components it trains
(the rest stay frozen; the split is written to the run config), which data it needs (checked
before training) and how to compute its loss terms for one batch.

1. ``autoencoders`` — the KL autoencoder of each imaging modality (reconstruction + KL) and the
   Optimus-style text VAE (token cross-entropy + KL) on the reports.
2. ``alignment`` — central alignment: symmetric InfoNCE between each imaging modality's prompt
   encoder and the frozen text encoder (text is the centre); MRI, which has no reports, is aligned
   to the (frozen) CT encoder on CT-MRI pairs, or to text when the data has MRI reports (phantom
   findings). Plus the Barlow-Twins visual-invariance loss (Eq. 4, lambda_1 = 5e-3) on two
   grey-level augmented views of every image.
3. ``diffusion`` — conditional latent diffusion per modality (epsilon loss) with condition
   dropout to the model's own null condition, exactly the one used for classifier-free guidance.
4. ``multiflow`` — cross-guided multi-flow training on paired flows: both members are noised at
   the same timestep, each branch's UNet is guided by the other's context tokens; only the
   context encoders and connector layers train (chain schedule: a side trained by an earlier flow
   stays frozen).

The engine (:mod:`medm2g_cli.engine`) provides the components, :mod:`.objectives` the losses and
:mod:`.trainable` the parameters each stage trains; this module binds them to the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from .. import modalities
from ..config import DECODER_PREFIXES
from ..errors import ConfigError
from . import augment, losses, objectives, trainable
from .config import STAGES, StageOptions
from .datasets import TEXT, ImageSet, MixedSet, PairSet, SourcesSet, TextSet, TrainingData, collate
from .flows import Flow, FlowSchedule

STAGE_HELP = {
    "autoencoders": "KL autoencoder per imaging modality + Optimus-style text VAE",
    "alignment": "central alignment (InfoNCE to text) + visual invariance (Barlow Twins, lambda_1 = 5e-3)",
    "diffusion": "conditional latent diffusion per modality with condition dropout",
    "multiflow": "cross-guided multi-flow training on paired flows",
}


def parse_pair(spec: str) -> tuple[str, list[str]]:
    """``"pd<t1+t2"`` -> ``("pd", ["t1", "t2"])``; names must be modalities or MRI contrasts."""
    if "<" not in spec:
        raise ConfigError(f"diffusion pair '{spec}' is not TARGET<SOURCE[+SOURCE]", "e.g. ct<t1 or pd<t1+t2")
    tgt, rest = (x.strip().lower() for x in spec.split("<", 1))
    srcs = [x.strip() for x in rest.split("+") if x.strip()]
    known = set(modalities.MODALITIES) | set(modalities.MRI_CONTRASTS)
    for k in [tgt, *srcs]:
        if k not in known:
            raise ConfigError(f"unknown name '{k}' in diffusion pair '{spec}'", f"use: {', '.join(sorted(known))}")
    if not srcs or (TEXT in srcs and len(srcs) > 1):
        raise ConfigError(f"diffusion pair '{spec}' needs one text source or one or more image sources", "e.g. pd<t1+t2")
    return tgt, srcs


def _random_crop(x: torch.Tensor, side: int | None, tries: int = 4) -> torch.Tensor:
    """A random ``side`` x ``side`` crop of each image in [B, C, H, W] (whole images when ``side`` is
    None or not smaller): of ``tries`` random positions, the one with the most content (pixels above
    the background level -1), so padded or air-filled corners do not eat the batch. Positions come
    from torch's generator, so a seeded run repeats."""
    if side is None or side >= min(x.shape[-2:]):
        return x
    h, w = x.shape[-2:]
    crops = []
    for i in range(x.shape[0]):
        ys = torch.randint(0, h - side + 1, (tries,)).tolist()
        xs = torch.randint(0, w - side + 1, (tries,)).tolist()
        cands = [x[i, :, y:y + side, c:c + side] for y, c in zip(ys, xs, strict=True)]
        crops.append(max(cands, key=lambda t: int((t > -0.98).sum())))
    return torch.stack(crops)


def _count(params: Sequence[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


@dataclass
class StageJob:
    """A stage bound to a model and data; implements the loop's TrainJob protocol."""

    name: str
    model: Any
    dataset: Any
    params: dict[str, list[torch.nn.Parameter]]  # component -> trainable parameters
    options: StageOptions
    val_dataset: Any = None
    schedule: FlowSchedule | None = None
    requires: list[str] = field(default_factory=list)
    side_params: dict[str, list[torch.nn.Parameter]] = field(default_factory=dict)  # modality -> params
    _latent_cache: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)
    _frozen_now: set[str] = field(default_factory=set)

    @property
    def module(self) -> torch.nn.Module:
        """The whole model (every parameter lives under it)."""
        return self.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Unique trainable parameters in a stable order."""
        seen: set[int] = set()
        out = []
        for name in sorted(self.params):
            for p in self.params[name]:
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def split(self) -> dict[str, Any]:
        """The trainable/frozen split written to the run config."""
        trainable = {k: _count(v) for k, v in sorted(self.params.items())}
        ids = {id(p) for v in self.params.values() for p in v}
        frozen = {}
        for comp_name, comp in _components(self.model).items():
            n = sum(p.numel() for p in comp.parameters() if id(p) not in ids)
            if n:
                frozen[comp_name] = n
        return {"stage": self.name, "description": STAGE_HELP.get(self.name, self.name),
                "trainable": trainable, "frozen": frozen,
                "trainable_total": sum(trainable.values()), "frozen_total": sum(frozen.values()),
                "requires": self.requires}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch items (mixed datasets grouped by part, flow items by flow)."""
        return collate(items)

    def before_step(self, step: int) -> None:
        """Chain schedule: freeze the sides of the current flow that an earlier flow trained.

        Frozen parameters get ``requires_grad=False`` for the step, so they receive no gradient
        (not even through the other branch they guide) and the optimizer leaves them untouched.
        The frozen set is a function of the step, hence identical on every process and on resume.
        """
        self._frozen_now = self.schedule.frozen_sides(step) if self.schedule is not None else set()
        frozen_ids = {id(p) for m in self._frozen_now for p in self.side_params.get(m, [])}
        for p in self.trainable_parameters():
            p.requires_grad_(id(p) not in frozen_ids)

    def set_train_mode(self) -> None:
        """Trainable components in train mode; frozen ones in eval mode, so e.g. the frozen text
        encoder or text-VAE encoder give the same embedding/latent for the same report every step."""
        self.model.eval()
        comps = _components(self.model)
        for name in self.params:
            if name in comps:
                comps[name].train()

    def save_model(self, path: Path) -> None:
        """Write the model folder with the engine's own ``save_pretrained``."""
        self.model.save_pretrained(path)

    # -- loss computation ---------------------------------------------------------------------

    def compute(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        """Loss terms of one micro-batch; ``loss`` is their (weighted) sum."""
        fn = {"autoencoders": self._autoencoders, "alignment": self._alignment,
              "diffusion": self._diffusion, "multiflow": self._multiflow}[self.name]
        terms = fn(batch, step)
        total = cast(torch.Tensor, sum(terms.values()))  # the terms are tensors, so the sum is one
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}}

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autoencoders(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for part, b in batch["parts"].items():
            if part == TEXT:
                rec, kl = objectives.text_vae_loss(self.model, b["text"], max_length=self.options.max_report_length)
                beta = self.options.text_kl_weight
                if beta is None:  # the model's own Optimus beta
                    beta = float(getattr(getattr(getattr(self.model, "config", None), "text", None), "kl_beta", 1.0))
                out["text_rec"] = rec
                out["text_kl"] = beta * kl
            else:
                x = _random_crop(b["image"], self.options.ae_crop).to(self._device())
                rec, kl = objectives.autoencoder_loss(self.model, part, x)
                out[f"{part}_rec"] = rec
                out[f"{part}_kl"] = self.options.kl_weight * kl
        return out

    def _alignment(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        dev = self._device()
        for part, b in batch["parts"].items():
            src, anchor = part.split(">")  # e.g. "xray>text", "mri>ct"
            x = b["a"].to(dev)
            emb = self.model.embed_image(src, x, normalize=False)
            with torch.no_grad():
                if anchor == TEXT:
                    centre = self.model.embed_text(b["b"])
                else:
                    centre = self.model.embed_image(anchor, b["b"].to(dev))
            if emb.shape[0] >= 2:
                out[f"ca_{src}"] = losses.info_nce(emb, centre.detach(), tau=self.options.tau)
                v1, v2 = augment.two_views(x)
                z1 = self.model.embed_image(src, v1, normalize=False)
                z2 = self.model.embed_image(src, v2, normalize=False)
                # Eq. 4 sums over the D embedding dimensions; dividing by D keeps the term on the
                # scale of InfoNCE whatever the width (a plain sum over D = 768 swamps L_CA).
                vi = losses.barlow_twins(z1, z2, self.options.lambda_1) / z1.shape[1]
                out[f"vi_{src}"] = self.options.invariance_weight * vi
        if not out:  # a micro-batch too small for batch statistics: nothing to learn from
            out["none"] = cast(torch.Tensor, sum(p.sum() * 0 for p in self.trainable_parameters()))
        return out

    def _latents(self, x: torch.Tensor, modality: str, index: torch.Tensor | None, part: str = "") -> torch.Tensor:
        """Frozen-autoencoder latents (deterministic posterior mean), cached per sample if asked.

        The cache key is (part, modality, index in the part): parts index their own record lists.
        """
        if not self.options.cache_latents or index is None:
            with torch.no_grad():
                return self.model.encode_image(modality, x, sample=False)
        keys = [(part, modality, int(i)) for i in index]
        missing = [j for j, k in enumerate(keys) if k not in self._latent_cache]
        if missing:
            with torch.no_grad():
                z = self.model.encode_image(modality, x[missing], sample=False)
            for j, zj in zip(missing, z, strict=True):
                self._latent_cache[keys[j]] = zj.detach()
        return torch.stack([self._latent_cache[k] for k in keys])

    def _condition(self, side: Any, key: str) -> torch.Tensor:
        with torch.no_grad():
            if key == TEXT:
                return self.model.embed_text(side)
            return self.model.embed_image(modalities.split_target(key)[0], side.to(self._device()))

    def _multi_source(self, part: str, b: dict[str, Any]) -> torch.Tensor:
        """Diffusion loss of an explicit ``target<src+src`` part (see :attr:`StageOptions.pairs`)."""
        dev = self._device()
        target, _ = parse_pair(part)
        tmod = "mri" if target in modalities.MRI_CONTRASTS else target
        if tmod == TEXT:
            with torch.no_grad():
                z0 = self.model.encode_text(b["a"], sample=False)
        else:
            z0 = self._latents(b["a"].to(dev), tmod, b.get("index"), part)
        srcs = b["srcs"].to(dev)  # [B, S, 1, H, W]
        keys = b["src_keys"][0].split("+")
        embs, sources = [], []
        for j, key in enumerate(keys):
            smod = "mri" if key in modalities.MRI_CONTRASTS else key
            embs.append(self._condition(srcs[:, j], smod))
            if tmod != TEXT:
                sources.append((key, self._latents(srcs[:, j], smod, b.get("index"), f"{part}:src{j}")))
        from ..engine.encoders import mix_conditions

        cond = mix_conditions(embs) if len(embs) > 1 else embs[0]
        contrast = list(b["a_key"]) if tmod == "mri" else None
        return objectives.diffusion_loss(self.model, tmod, z0, cond, cond_drop_prob=self.options.cond_drop_prob,
                                         contrast=contrast, sources=sources)

    def _loss_name(self, target: str) -> str:
        """``v`` for a branch that predicts v (``scheduler.v_prediction``), else ``eps``: the logged term's prefix."""
        predicts_v = getattr(self.model, "predicts_v", None)
        return "v" if predicts_v is not None and predicts_v(target) else "eps"

    def _diffusion(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        dev = self._device()
        for part, b in batch["parts"].items():
            if "srcs" in b:
                tgt = part.split("<")[0]
                out[f"{self._loss_name(tgt)}_{part.replace('<', '_from_').replace('+', '_')}"] = self._multi_source(part, b)
                continue
            target, cond_key = part.split("<")  # "xray<text", "mri<ct", "text<xray"
            if target == TEXT:
                with torch.no_grad():
                    z0 = self.model.encode_text(b["a"], sample=False)
            else:
                z0 = self._latents(b["a"].to(dev), target, b.get("index"), part)
            cond = self._condition(b["b"], cond_key)
            contrast = list(b["a_key"]) if target == "mri" else None
            kwargs: dict[str, Any] = {}
            uses_context = getattr(self.model, "uses_context", None)
            if cond_key != TEXT and uses_context is not None and uses_context(cond_key, target):
                # A pixel-aligned source (CT for MRI, one contrast for another) also conditions
                # spatially (context tokens or concat), as at inference.
                src_mod = modalities.split_target(cond_key)[0]
                src_keys = list(b["b_key"])
                kwargs["sources"] = [(src_keys[0] if len(set(src_keys)) == 1 else src_mod,
                                      self._latents(b["b"].to(dev), src_mod, b.get("index"), part + ":src"))]
            out[f"{self._loss_name(target)}_{target}_from_{cond_key}"] = objectives.diffusion_loss(
                self.model, target, z0, cond, cond_drop_prob=self.options.cond_drop_prob, contrast=contrast, **kwargs
            )
        return out

    def _multiflow(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        assert self.schedule is not None
        flow = self.schedule.flow(step) if step >= 0 else self.schedule.flows[0]
        b = batch["parts"][flow.name]
        za = self._flow_latents(b["a"], flow.a, b, f"{flow.name}:a")
        zb = self._flow_latents(b["b"], flow.b, b, f"{flow.name}:b")
        la, lb = objectives.cross_guided_loss(
            self.model, (flow.a[0], za, b.get("a_key")), (flow.b[0], zb, b.get("b_key")),
            cond_drop_prob=self.options.cond_drop_prob,
        )
        # Both terms count (CoDi sums the branches); a frozen side's parameters simply get no gradient.
        # Terms are named by side (a contrast for MRI pairs such as t1-t2, else the modality).
        side_a, side_b = flow.a[1] or flow.a[0], flow.b[1] or flow.b[0]
        return {f"flow_{flow.name}_{side_a}": la, f"flow_{flow.name}_{side_b}": lb}

    def _flow_latents(self, side: Any, spec: tuple[str, str | None], b: dict[str, Any], part: str) -> torch.Tensor:
        modality = spec[0]
        if modality == TEXT:
            with torch.no_grad():
                return self.model.encode_text(side, sample=False)
        return self._latents(side.to(self._device()), modality, b.get("index"), part)


def _components(model: Any) -> dict[str, torch.nn.Module]:
    if hasattr(model, "components"):
        comps = model.components()
        return dict(comps.items()) if hasattr(comps, "items") else {n: model.component(n) for n in comps}
    return {n: m for n, m in model.named_children()}


# ------------------------------------------------------------------------------------------------
# Building stage jobs


def _trainable(model: Any, stage: str, modality_list: Sequence[str]) -> tuple[
        dict[str, list[torch.nn.Parameter]], dict[str, list[torch.nn.Parameter]]]:
    """Trainable parameters per component and per modality, as the model defines them for ``stage``."""
    by_component: dict[str, list[torch.nn.Parameter]] = {}
    by_modality: dict[str, list[torch.nn.Parameter]] = {}
    for m in modality_list:
        got = trainable.trainable_parameters(model, stage, [m])
        for k, v in got.items():
            if v:
                by_component.setdefault(k, [])
                known = {id(p) for p in by_component[k]}
                by_component[k] += [p for p in v if id(p) not in known]
                by_modality.setdefault(m, []).extend(v)
    return by_component, by_modality


def _decoder_side(model: Any, trained: Sequence[str], params: dict[str, list[torch.nn.Parameter]],
                  per_modality: dict[str, list[torch.nn.Parameter]]
                  ) -> tuple[dict[str, list[torch.nn.Parameter]], dict[str, list[torch.nn.Parameter]]]:
    """``params`` restricted to the image autoencoders' decoders (``ae_decoder_only``)."""
    if TEXT in trained:
        raise ConfigError("ae_decoder_only applies to the image autoencoders, not the text VAE",
                          "leave text out of stage_options.targets")
    comps = _components(model)
    keep: set[int] = set()
    for m in trained:
        vae = comps.get(f"vae_{m}")
        if vae is None:
            raise ConfigError(f"the model has no {m} autoencoder", "check stage_options.targets")
        keep |= {id(p) for n, p in vae.named_parameters() if n.startswith(DECODER_PREFIXES)}
    params = {k: [p for p in v if id(p) in keep] for k, v in params.items()}
    per_modality = {k: [p for p in v if id(p) in keep] for k, v in per_modality.items()}
    return {k: v for k, v in params.items() if v}, {k: v for k, v in per_modality.items() if v}


def build_stage(
    stage: str, model: Any, data: TrainingData, options: StageOptions, *,
    flows: Sequence[Flow] = (), schedule: str = "chain", steps: int = 1, val: TrainingData | None = None,
) -> StageJob:
    """Bind ``stage`` to the model and data; refuses (before training) data that lacks a modality."""
    size = int(model.image_size) if hasattr(model, "image_size") else 64
    avail = data.available()
    image_mods = [m for m in modalities.IMAGE_MODALITIES if m in avail]
    parts: dict[str, Any] = {}
    val_parts: dict[str, Any] = {}
    requires: list[str] = []

    def add(name: str, ds_builder, keys: tuple[str, ...], purpose: str) -> None:
        parts[name] = ds_builder(data.require(*keys, purpose=purpose))
        if val is not None and val.with_keys(*keys):
            val_parts[name] = ds_builder(val.with_keys(*keys))
        requires.append("+".join(keys))

    if stage == "autoencoders":
        # options.targets restricts the stage (e.g. only the text VAE, leaving image latents as they are)
        wanted = set(options.targets) if options.targets else set(image_mods) | {TEXT}
        ae_mods = [m for m in image_mods if m in wanted]
        for m in ae_mods:
            add(m, lambda r, m=m: ImageSet(r, m, size), (m,), f"the {m} autoencoder")
        text_ae = TEXT in avail and TEXT in wanted
        if text_ae:
            add(TEXT, TextSet, (TEXT,), "the text VAE")
        if not parts:
            raise ConfigError(f"no autoencoder to train for targets {sorted(wanted)}", "check stage_options.targets and --data")
        trained = ae_mods + ([TEXT] if text_ae else [])
    elif stage == "alignment":
        trained = []
        for m in image_mods:
            if (m, TEXT) and data.with_keys(m, TEXT):
                add(f"{m}>{TEXT}", lambda r, m=m: PairSet(r, m, TEXT, size), (m, TEXT), f"aligning {m} to text")
            elif m == "mri":
                add("mri>ct", lambda r: PairSet(r, "mri", "ct", size), ("mri", "ct"),
                    "aligning MRI through paired CT (MRI has no reports)")
            else:
                data.require(m, TEXT, purpose=f"aligning {m} to text")
            trained.append(m)
    elif stage == "diffusion" and options.pairs:
        trained = []
        for spec in options.pairs:
            tgt, srcs = parse_pair(spec)
            tmod = "mri" if tgt in modalities.MRI_CONTRASTS else tgt
            if tgt == TEXT or srcs == [TEXT]:  # one condition: the generic pair path
                add(f"{tmod}<{srcs[0]}", lambda r, t=tgt, s=srcs[0]: PairSet(r, t, s, size), (tgt, srcs[0]),
                    f"the {tgt} diffuser from {srcs[0]}")
            else:
                add(spec, lambda r, t=tgt, s=srcs: SourcesSet(r, t, s, size), (tgt, *srcs),
                    f"the {tgt} diffuser from {'+'.join(srcs)}")
            trained.append(tmod)
        trained = list(dict.fromkeys(trained))
    elif stage == "diffusion":
        targets = list(options.targets) if options.targets else image_mods + ([TEXT] if TEXT in avail else [])
        trained = []
        for t in targets:
            if t == TEXT:  # every imaging modality with reports conditions it (X-ray->text, CT->text, Table A1)
                srcs = [m for m in image_mods if data.with_keys(m, TEXT)]
                if not srcs:
                    data.require("xray", TEXT, purpose="the text (report) diffuser")  # raises: no reports
                for src in srcs:
                    add(f"{TEXT}<{src}", lambda r, s=src: PairSet(r, TEXT, s, size), (TEXT, src), f"the text diffuser from {src}")
            else:
                if t not in avail:
                    data.require(t, purpose=f"the {t} diffuser")
                if data.with_keys(t, TEXT):
                    add(f"{t}<{TEXT}", lambda r, t=t: PairSet(r, t, TEXT, size), (t, TEXT), f"the {t} diffuser")
                else:
                    other = next((m for m in image_mods if m != t and data.with_keys(t, m)), None)
                    if other is None:
                        data.require(t, TEXT, purpose=f"the {t} diffuser (conditioned on text or a paired scan)")
                    # cast: when no paired scan exists, require() above has raised
                    add(f"{t}<{other}", lambda r, t=t, o=other: PairSet(r, t, o, size), (t, cast(str, other)),
                        f"the {t} diffuser")
            trained.append(t)
    elif stage == "multiflow":
        if not flows:
            raise ConfigError("the multiflow stage needs at least one flow", "pass --flows, e.g. text-xray,ct-mri")
        for f in flows:
            ka = f.a[1] or f.a[0]
            kb = f.b[1] or f.b[0]
            add(f.name, lambda r, a=ka, b=kb: PairSet(r, a, b, size), (ka, kb), f"flow {f.name}")
        trained = sorted({m for f in flows for m in f.modalities})
    else:
        raise ConfigError(f"unknown stage '{stage}'", f"use one of: {', '.join(STAGES)}")

    dataset = MixedSet(parts)
    val_ds = MixedSet(val_parts) if val_parts else None
    sched = FlowSchedule(tuple(flows), steps, schedule) if stage == "multiflow" else None
    params, per_modality = _trainable(model, stage, trained)
    if stage == "autoencoders" and options.ae_decoder_only:
        params, per_modality = _decoder_side(model, trained, params, per_modality)
    return StageJob(stage, model, dataset, params, options, val_dataset=val_ds, schedule=sched, requires=requires,
                    side_params=per_modality)
