"""Sampling from a :class:`~medm2g_cli.engine.model.MedM2G`: the pipeline next to the model.

Like a diffusers pipeline beside its models and schedulers, this module owns everything that turns
the model's one-step output into samples:

- condition preparation: the mixed pooled prompt, source context tokens or concat channels
  (:func:`prepare_conditions`);
- latent preparation: per-sample seeded noise (:func:`sample_generators`, :func:`initial_noise`);
- ONE classifier-free guidance helper (:func:`guided_noise`, on a pre-stacked ``[null; cond]``
  batch built by :func:`guidance_batch`);
- ONE denoising loop (:func:`denoise`) over one branch (:func:`generate`) or two branches that
  attend to each other's noisy latent at every step (:func:`generate_joint`);
- decoding (:func:`decode_latents`).

Usage::

    from medm2g_cli.engine import Condition, MedM2G, generate, generate_joint
    model = MedM2G.from_preset("tiny")
    img = generate(model, "xray", [Condition("text", ["No acute findings."])], num_samples=2)
    rep = generate(model, "text", [Condition("xray", img)])
    both = generate_joint(model, ("xray", "text"), [Condition("text", ["..."])])

The model's methods are always called through the instance (``model.prompt_tokens(...)``), so
per-instance wrappers such as :func:`medm2g_cli.inference.stages.stage_timer` see every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from .. import modalities
from ..config import SampleConfig
from ..errors import ConfigError, InputError
from .encoders import mix_conditions
from .model import Condition, MedM2G
from .schedulers import ddim_step, guided_steps, sampling_scheduler

Conditioning = tuple[torch.Tensor, torch.Tensor | None]
"""The cross-attention tokens and concat channels (or None) of one branch's UNet call."""


# -- conditions ----------------------------------------------------------------------------------

def condition_rows(conditions: Sequence[Condition]) -> int:
    """The batch size the conditions share (conditions of one row broadcast); :class:`InputError` if they differ."""
    sizes = {len(c) for c in conditions} - {1}
    if len(sizes) > 1:
        raise InputError(f"conditions have different batch sizes {sorted(sizes)}",
                         "give every condition the same number of rows (or one row)")
    return sizes.pop() if sizes else 1


def prepare_conditions(model: MedM2G, target: str, conditions: Sequence[Condition], rows: int,
                       latent_like: torch.Tensor
                       ) -> tuple[torch.Tensor | None, list[tuple[str, torch.Tensor]], torch.Tensor | None]:
    """Pooled mixed prompt, source context tokens (once per source) and concat channels."""
    if not conditions:
        return None, [], None
    embs, weights, sources = [], [], []
    for c in conditions:
        if c.modality != "text":
            model.require_branch(c.modality)
        e = model.embed_condition(c)
        embs.append(e.expand(rows, -1) if e.shape[0] == 1 else e)
        weights.append(c.weight)
        if model.uses_context(c.modality, target):
            z = model.encode_image(c.modality, cast(torch.Tensor, c.data))
            sources.append((c.key, z.expand(rows, *z.shape[1:]) if z.shape[0] == 1 else z))
    prompt = mix_conditions(embs, weights)
    if sources and sources[0][1].shape[2:] != latent_like.shape[2:]:
        raise InputError(f"source images give latents {tuple(sources[0][1].shape[2:])} but the target is "
                         f"{tuple(latent_like.shape[2:])}", "use the same height/width for sources and target")
    ctx, concat = model.source_inputs(target, sources, latent_like[:1].expand(rows, *latent_like.shape[1:]), None)
    return prompt, ctx, concat


# -- latents and noise ---------------------------------------------------------------------------

def sample_generators(n: int, sample: SampleConfig, generator: torch.Generator | None) -> list[torch.Generator]:
    """One seeded CPU generator per output sample (seed ``sample.seed + i``, or a base drawn from ``generator``).

    The noise of sample i then depends neither on how the batch is sliced nor on the device.
    """
    base = sample.seed if generator is None else int(
        torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return [torch.Generator("cpu").manual_seed(base + i) for i in range(n)]


def initial_noise(model: MedM2G, gens: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal latents [len(gens), *shape], row i drawn from ``gens[i]``, on the model's device/dtype."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(model.device, model.dtype)


# -- guidance and the denoising loop -------------------------------------------------------------

def guidance_batch(tokens: torch.Tensor, null_tokens: torch.Tensor, concat: torch.Tensor | None = None,
                   null_concat: torch.Tensor | None = None) -> Conditioning:
    """The ``[null; cond]`` conditioning of a guided UNet call (zeros for null concat channels)."""
    cc = None if concat is None else torch.cat([null_concat if null_concat is not None
                                                else torch.zeros_like(concat), concat])
    return torch.cat([null_tokens, tokens]), cc


def guided_noise(model: MedM2G, target: str, z: torch.Tensor, t: Any, seq: torch.Tensor,
                 seq_concat: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """Classifier-free guided epsilon: eps(null) + s * (eps(cond) - eps(null)).

    With ``guidance != 1`` ``seq``/``seq_concat`` are the stacked ``[null; cond]`` conditioning
    (:func:`guidance_batch`) and both halves run in ONE batched forward; with ``guidance == 1``
    they are the conditional ones and only the conditional rows run.
    """
    tt = torch.as_tensor(t, device=model.device).reshape(-1)
    if guidance == 1.0:
        return model.predict_noise(target, z, tt.expand(z.shape[0]), seq, seq_concat)
    eps = model.predict_noise(target, torch.cat([z, z]), tt.expand(2 * z.shape[0]), seq, seq_concat)
    e_null, e_cond = eps.chunk(2)
    return e_null + guidance * (e_cond - e_null)


def scheduler_step(model: MedM2G, sched: Any, sample: SampleConfig, eps: torch.Tensor, t: Any, z: torch.Tensor,
                   gens: Sequence[torch.Generator]) -> torch.Tensor:
    """One sampler update z_t -> z_prev; stochastic samplers draw their noise from ``gens`` (one per row)."""
    if sample.sampler == "ddim":
        noise = initial_noise(model, gens, tuple(z.shape[1:])) if sample.eta > 0 else None
        return ddim_step(sched, eps, int(t), z, sample.eta, noise)
    if sample.sampler == "sde-dpm++":  # per-sample seeded noise, as for DDIM
        return sched.step(eps, t, z, variance_noise=initial_noise(model, gens, tuple(z.shape[1:]))).prev_sample
    return sched.step(eps, t, z).prev_sample


def denoise(model: MedM2G, targets: Sequence[str], latents: Sequence[torch.Tensor], sample: SampleConfig,
            gens: Sequence[torch.Generator], guidance: float,
            conditioning: Callable[[Any, list[torch.Tensor], bool], list[Conditioning]]) -> list[torch.Tensor]:
    """The denoising loop of one or more branches stepped together from noise ``latents``.

    ``conditioning(t, z, guided)`` gives each branch's conditioning for step ``t`` from the current
    latents ``z`` of all branches: the ``[null; cond]`` stack when ``guided``, the conditional one
    otherwise. Guidance runs for the first ``sample.guidance_stop`` of the steps (none when
    ``guidance == 1``); after that only the conditional rows run.
    """
    scheds = [sampling_scheduler(model.config.scheduler, sample) for _ in targets]
    z = [zi * s.init_noise_sigma for zi, s in zip(latents, scheds, strict=True)]
    guided = 0 if guidance == 1.0 else guided_steps(sample)
    for i, t in enumerate(scheds[0].timesteps):
        g = guidance if i < guided else 1.0
        conds = conditioning(t, z, g != 1.0)
        new = []
        for mod, sched, zi, (seq, seq_concat) in zip(targets, scheds, z, conds, strict=True):
            eps = guided_noise(model, mod, zi, t, seq, seq_concat, g)
            new.append(scheduler_step(model, sched, sample, eps, t, zi, gens))
        z = new
    return z


def decode_latents(model: MedM2G, target: str, z: torch.Tensor, batch_size: int | None = None, text_method: str = "greedy",
           num_beams: int = 4, max_length: int | None = None) -> torch.Tensor | list[str]:
    """Images [N, 1, H, W] in [-1, 1] (decoded ``batch_size`` latents at a time) or N reports."""
    mod = modalities.split_target(target)[0]
    if mod == "text":
        return model.decode_text(z, method=text_method, num_beams=num_beams, max_length=max_length)
    bs = batch_size or z.shape[0]
    return torch.cat([model.decode_image(mod, z[i:i + bs]) for i in range(0, z.shape[0], bs)])


def _fixed(cond: Conditioning, both: Conditioning) -> Callable[[Any, list[torch.Tensor], bool], list[Conditioning]]:
    # The conditioning of a single branch does not change during the loop: built once, not per step.
    def conditioning(t: Any, z: list[torch.Tensor], guided: bool) -> list[Conditioning]:
        return [both if guided else cond]
    return conditioning


# -- the two entry points ------------------------------------------------------------------------

@torch.inference_mode()
def generate(
    model: MedM2G,
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
    model.require_branch(mod)
    conditions = list(conditions)
    rows = condition_rows(conditions)
    shape = model.latent_shape(target, height, width)
    like = torch.zeros((1, *shape), device=model.device, dtype=model.dtype)
    prompt, ctx, concat = prepare_conditions(model, mod, conditions, rows, like)
    tokens = model.prompt_tokens(mod, prompt, contrast, ctx, batch=rows)
    null = model.null_tokens_like(mod, tokens, contrast)
    if num_samples > 1:
        tokens, null = tokens.repeat_interleave(num_samples, 0), null.repeat_interleave(num_samples, 0)
        concat = None if concat is None else concat.repeat_interleave(num_samples, 0)
    total = rows * num_samples
    guidance = sample.guidance if conditions else 1.0  # nothing to guide towards
    gens = sample_generators(total, sample, generator)
    bs = batch_size or total
    outs = []
    for s in range(0, total, bs):
        sl = slice(s, min(s + bs, total))
        cc = None if concat is None else concat[sl]
        # The conditioning is fixed: built once per slice batch, not once per step.
        cond: Conditioning = (tokens[sl], cc)
        both = guidance_batch(tokens[sl], null[sl], cc) if guidance != 1.0 else cond
        z = initial_noise(model, gens[sl], shape)
        outs += denoise(model, [mod], [z], sample, gens[sl], guidance, _fixed(cond, both))
    z = torch.cat(outs)
    if not decode:
        return z
    return decode_latents(model, mod, z, bs, text_method=text_method, num_beams=num_beams, max_length=max_length)


@torch.inference_mode()
def generate_joint(
    model: MedM2G,
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
    Returns ``{target: output}`` (latents with ``decode=False``).
    """
    sample = (sample or SampleConfig()).validate()
    if len(targets) != 2 or targets[0] == targets[1]:
        raise ConfigError("joint generation needs two different targets", "e.g. xray and text")
    specs = [modalities.split_target(t) for t in targets]
    for m, _ in specs:
        model.require_branch(m)
    conditions = list(conditions)
    rows = condition_rows(conditions)
    total = rows * num_samples
    prompt = None
    if conditions:
        prompt = mix_conditions([e.expand(rows, -1) if e.shape[0] == 1 else e
                                 for e in (model.embed_condition(c) for c in conditions)],
                                [c.weight for c in conditions]).repeat_interleave(num_samples, 0)
    guidance = sample.guidance if conditions else 1.0
    shapes = [model.latent_shape(t, height, width) for t in targets]
    gens = sample_generators(total, sample, generator)
    null_emb = model.null_embedding(1)  # once, not per step

    def conditioning(t: Any, z: list[torch.Tensor], guided: bool) -> list[Conditioning]:
        # Each branch attends to the partner's current noisy latent, so this is rebuilt every step.
        tt = torch.as_tensor(t, device=model.device).reshape(-1).expand(total)
        ctx = [model.context_tokens(specs[i][0], z[i], tt) for i in range(2)]
        out: list[Conditioning] = []
        for i in range(2):
            m, c = specs[i]
            partner = ctx[1 - i]
            tokens = model.prompt_tokens(m, prompt, c, [(specs[1 - i][0], partner)], batch=total, null=null_emb)
            if guided:
                null = model.null_tokens_like(m, tokens, c, n_keep=partner.shape[1], null=null_emb)
                out.append(guidance_batch(tokens, null))
            else:
                out.append((tokens, None))
        return out

    noise = [initial_noise(model, gens, shapes[0]), initial_noise(model, gens, shapes[1])]
    z = denoise(model, [m for m, _ in specs], noise, sample, gens, guidance, conditioning)
    if not decode:
        return {targets[0]: z[0], targets[1]: z[1]}
    return {name: decode_latents(model, m, zi, text_method=text_method, num_beams=num_beams, max_length=max_length)
            for (m, _), name, zi in zip(specs, targets, z, strict=True)}
