"""Our DDIM update against diffusers' DDIMScheduler.step."""

from __future__ import annotations

import pytest
import torch

from medm2g_cli.config import SchedulerConfig
from medm2g_cli.engine.schedulers import ddim_scheduler, ddim_step


def test_schedule_is_ldm_linear() -> None:
    s = ddim_scheduler(SchedulerConfig())
    expected = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    torch.testing.assert_close(s.betas, expected)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(eta: float) -> None:
    g = torch.Generator().manual_seed(0)
    ours, ref = ddim_scheduler(SchedulerConfig()), ddim_scheduler(SchedulerConfig())
    ours.set_timesteps(50)
    ref.set_timesteps(50)
    z = torch.randn(2, 4, 8, 8, generator=g)
    for t in ref.timesteps[[0, 1, 25, -1]]:
        eps = torch.randn(2, 4, 8, 8, generator=g)
        noise = torch.randn(2, 4, 8, 8, generator=g)
        expected = ref.step(eps, t, z, eta=eta, variance_noise=noise).prev_sample
        got = ddim_step(ours, eps, int(t), z, eta, noise)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
