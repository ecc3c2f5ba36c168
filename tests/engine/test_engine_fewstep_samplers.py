"""Few-step samplers of issue 20 against a plain loop over diffusers' own schedulers (tiny model).

``engine.sampling.generate`` with DPM-Solver++ (Karras sigmas), SDE-DPM-Solver++ (per-sample seeded noise)
or UniPC (trailing spacing), with guidance stopped part-way, must give what a loop written like a diffusers pipeline gives from the same
parts: the scheduler built directly from diffusers, guidance as a batch of two up to the stop step
and conditional rows only after it. Tolerance: 1e-4 on decoded images in [-1, 1] (float32
reassociation only; the two compute the same thing).
"""

from __future__ import annotations

import pytest
import torch

from medm2g_cli.config import SampleConfig
from medm2g_cli.engine import Condition, MedM2G, generate


@pytest.fixture(scope="module")
def model() -> MedM2G:
    torch.set_num_threads(1)
    # The CT branch predicts v (as in the demo weights): exercises the v -> epsilon conversion too.
    return MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri"), **{"scheduler.v_prediction": ("ct",)}).eval()


def _diffusers_scheduler(kind: str, **kw: object) -> object:
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    common = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
    if kind in ("dpm++", "sde-dpm++"):
        algo = "sde-dpmsolver++" if kind == "sde-dpm++" else "dpmsolver++"
        return DPMSolverMultistepScheduler(**common, algorithm_type=algo, solver_order=2, **kw)
    return UniPCMultistepScheduler(**common, solver_order=2, solver_type="bh2", **kw)


def _plain(model: MedM2G, x: torch.Tensor, sample: SampleConfig, sched: object) -> torch.Tensor:
    n = x.shape[0]
    with torch.no_grad():
        emb = model.embed_image("mri", x)
        ctx = model.context_tokens("mri", model.encode_image("mri", x), 0)
        cond = model.prompt_tokens("ct", emb, None, [("mri", ctx)], batch=n)
        null = model.null_tokens_like("ct", cond, None)
        sched.set_timesteps(sample.steps)  # type: ignore[attr-defined]
        gens = [torch.Generator().manual_seed(sample.seed + i) for i in range(n)]  # one per sample, as generate

        def noise() -> torch.Tensor:
            return torch.stack([torch.randn(model.latent_shape("ct"), generator=g) for g in gens])

        z = noise() * sched.init_noise_sigma  # type: ignore[attr-defined]
        guided = round(sample.guidance_stop * sample.steps)
        for i, t in enumerate(sched.timesteps):  # type: ignore[attr-defined]
            tt = torch.full((n,), int(t))
            if i < guided:
                eps = model.predict_noise("ct", torch.cat([z, z]), torch.cat([tt, tt]), torch.cat([null, cond]))
                e_u, e_c = eps.chunk(2)
                eps = e_u + sample.guidance * (e_c - e_u)
            else:
                eps = model.predict_noise("ct", z, tt, cond)
            extra = {"variance_noise": noise()} if sample.sampler == "sde-dpm++" else {}
            z = sched.step(eps, t, z, **extra).prev_sample  # type: ignore[attr-defined]
        return model.decode_image("ct", z)


@pytest.mark.parametrize(("sample", "kw"), [
    (SampleConfig(sampler="dpm++", steps=6, spacing="karras", guidance=2.0, seed=3), {"use_karras_sigmas": True}),
    (SampleConfig(sampler="dpm++", steps=5, guidance=2.5, guidance_stop=0.6, seed=1), {}),
    (SampleConfig(sampler="unipc", steps=6, spacing="trailing", guidance=2.0, guidance_stop=0.5, seed=7),
     {"timestep_spacing": "trailing"}),
    # the demo model's MRI setting: stochastic, noise drawn per sample from its own seed
    (SampleConfig(sampler="sde-dpm++", steps=5, spacing="karras", guidance=2.0, seed=2), {"use_karras_sigmas": True}),
])
def test_generate_matches_plain_diffusers_loop(model: MedM2G, sample: SampleConfig, kw: dict) -> None:
    x = torch.rand((2, 1, 32, 32), generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = generate(model, "ct", [Condition("mri", x)], sample=sample)
    ref = _plain(model, x, sample, _diffusers_scheduler(sample.sampler, **kw))
    assert isinstance(ours, torch.Tensor)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_guidance_stop_halves_the_late_rows(model: MedM2G) -> None:
    """Rows through the UNet: 2 per slice while guided, 1 after the stop (the speed-up is real)."""
    from medm2g_cli.inference.stages import stage_timer

    x = torch.rand((3, 1, 32, 32), generator=torch.Generator().manual_seed(1)) * 2 - 1
    rows = {}
    for stop in (1.0, 0.5, 0.0):
        with stage_timer(model) as st:
            generate(model, "ct", [Condition("mri", x)], sample=SampleConfig(sampler="dpm++", steps=4, guidance_stop=stop))
        rows[stop] = st.unet_rows
    assert rows == {1.0: 4 * 2 * 3, 0.5: 2 * 2 * 3 + 2 * 3, 0.0: 4 * 3}


def test_bad_sampler_settings_are_config_errors() -> None:
    from medm2g_cli.errors import ConfigError

    for bad in (SampleConfig(sampler="euler"),  # type: ignore[arg-type]
                SampleConfig(sampler="ddim", spacing="karras"), SampleConfig(spacing="cosine"),
                SampleConfig(guidance_stop=1.5)):
        with pytest.raises(ConfigError):
            bad.validate()
