"""Noise schedules and samplers (Table A3: 1000 steps, LDM linear beta 0.00085 -> 0.012).

The LDM "linear" schedule is ``linspace(sqrt(b0), sqrt(bT), 1000)**2``, diffusers' ``scaled_linear``.
DDIM follows SD's settings (``set_alpha_to_one=False``, ``steps_offset=1``); :func:`ddim_step`
is our own update (so per-sample noise generators can be used) and is tested against
``DDIMScheduler.step``. DPM-Solver++ (2M) is diffusers' ``DPMSolverMultistepScheduler`` and UniPC
its ``UniPCMultistepScheduler`` (bh2, as diffusers recommends for guided sampling);
:func:`sampling_scheduler` builds the one a :class:`~medm2g_cli.config.SampleConfig` names, with its
timestep spacing, and sets its steps.
"""

from __future__ import annotations

import torch

# From the defining modules: mypy types the ``diffusers``/``diffusers.schedulers`` names as their
# torch-less dummy classes (diffusers' TYPE_CHECKING re-exports).
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

from ..config import SampleConfig, SchedulerConfig


def _common(cfg: SchedulerConfig) -> dict:
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "beta_schedule": cfg.beta_schedule,
        "prediction_type": cfg.prediction_type,
    }


def training_scheduler(cfg: SchedulerConfig) -> DDPMScheduler:
    """The forward-noising schedule used in training (``add_noise``)."""
    return DDPMScheduler(**_common(cfg), clip_sample=False)


def ddim_scheduler(cfg: SchedulerConfig) -> DDIMScheduler:
    """DDIM exactly as Stable Diffusion configures it."""
    return DDIMScheduler(**_common(cfg), clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def dpm_scheduler(cfg: SchedulerConfig, spacing: str | None = None, sde: bool = False) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order, multistep); deterministic (eta does not apply) unless ``sde``
    (SDE-DPM-Solver++: the caller passes the noise of each step as ``variance_noise``).

    ``spacing``: None/"linspace" (diffusers' default), "leading", "trailing", or "karras" (Karras
    sigmas, Karras et al. 2022)."""
    return DPMSolverMultistepScheduler(**_common(cfg), algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++",
                                       solver_order=2, **_spacing(spacing))


def unipc_scheduler(cfg: SchedulerConfig, spacing: str | None = None) -> UniPCMultistepScheduler:
    """UniPC (2nd order, bh2 corrector, Zhao et al. 2023); deterministic. ``spacing`` as for
    :func:`dpm_scheduler`."""
    return UniPCMultistepScheduler(**_common(cfg), solver_order=2, solver_type="bh2", **_spacing(spacing))


def _spacing(spacing: str | None) -> dict:
    if spacing is None:
        return {}
    if spacing == "karras":
        return {"use_karras_sigmas": True}
    return {"timestep_spacing": spacing}


def sampling_scheduler(cfg: SchedulerConfig, sample: SampleConfig) -> DDIMScheduler | DPMSolverMultistepScheduler \
        | UniPCMultistepScheduler:
    """The scheduler ``sample.sampler`` names (spacing applied), with ``sample.steps`` set."""
    if sample.sampler == "ddim":
        s: DDIMScheduler | DPMSolverMultistepScheduler | UniPCMultistepScheduler = ddim_scheduler(cfg)
        if sample.spacing is not None:
            s = DDIMScheduler.from_config(s.config, timestep_spacing=sample.spacing)
    elif sample.sampler in ("dpm++", "sde-dpm++"):
        s = dpm_scheduler(cfg, sample.spacing, sde=sample.sampler == "sde-dpm++")
    else:
        s = unipc_scheduler(cfg, sample.spacing)
    s.set_timesteps(sample.steps)
    return s


def guided_steps(sample: SampleConfig) -> int:
    """How many of the first steps use classifier-free guidance (``sample.guidance_stop`` of them,
    rounded; the rest run the conditional rows only)."""
    return int(round(sample.guidance_stop * sample.steps))


def ddim_step(
    scheduler: DDIMScheduler,
    eps: torch.Tensor,
    t: int,
    sample: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM update z_t -> z_prev (method.md section 1.6), identical to ``DDIMScheduler.step``.

    x0 = (z_t - sqrt(1 - a_t) eps) / sqrt(a_t);
    sigma = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev);
    z_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma * noise.
    ``noise`` is drawn by the caller (per-sample generators keep batches slice-independent).
    """
    prev_t = t - scheduler.config["num_train_timesteps"] // scheduler.num_inference_steps
    ac = scheduler.alphas_cumprod
    a_t = ac[t]
    a_prev = ac[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    x0 = (sample - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    sigma = eta * var.sqrt()
    prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
    if eta > 0 and noise is not None:
        prev = prev + sigma * noise
    return prev.to(sample.dtype)
