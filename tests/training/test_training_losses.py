"""Each loss term against a value computed by hand, plus the augmentations and flow/task presets."""

from __future__ import annotations

import math

import pytest
import torch

from medm2g_cli.errors import ConfigError
from medm2g_cli.training import augment, flows, losses, tasks


def test_info_nce_hand_computed():
    # Two pairs on the unit circle: a = [e1, e2], b = [e1, (e1+e2)/sqrt2]; tau = 1.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]) / torch.tensor([[1.0], [math.sqrt(2)]])
    r = 1 / math.sqrt(2)
    # logits = a b^T = [[1, r], [0, r]]
    l_ab = 0.5 * (-math.log(math.e / (math.e + math.exp(r))) - math.log(math.exp(r) / (1 + math.exp(r))))
    # columns: b_0 against a: [1, 0] (positive 1); b_1 against a: [r, r] (positive r)
    l_ba = 0.5 * (-math.log(math.e / (math.e + 1)) - math.log(0.5))
    got = losses.info_nce(a, b, tau=1.0)
    assert got.item() == pytest.approx(0.5 * (l_ab + l_ba), abs=1e-6)
    # Temperature scales the logits; normalisation makes the scale of the inputs irrelevant.
    assert losses.info_nce(3 * a, 5 * b, tau=1.0).item() == pytest.approx(got.item(), abs=1e-6)
    assert losses.info_nce(a, b, tau=0.1).item() < got.item()


def test_barlow_twins_hand_computed():
    # N = 2, D = 2. After batch standardisation each column is (+1, -1) or (-1, +1).
    z1 = torch.tensor([[1.0, 5.0], [3.0, 1.0]])  # standardised: [[-1, 1], [1, -1]]
    z2 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # standardised: [[-1, -1], [1, 1]]
    # C = bn(z1)^T bn(z2) / 2 = [[1, 1], [-1, -1]] (up to the eps of the variance)
    c = losses.cross_correlation(z1, z2)
    assert torch.allclose(c, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), atol=1e-4)
    # on-diagonal: (1-1)^2 + (1-(-1))^2 = 4; off-diagonal: 1 + 1 = 2 -> 4 + lambda_1 * 2
    got = losses.barlow_twins(z1, z2)
    assert got.item() == pytest.approx(4 + 5e-3 * 2, abs=1e-3)
    assert losses.LAMBDA_1 == 5e-3
    assert losses.barlow_twins(z1, z2, lambd=1.0).item() == pytest.approx(6.0, abs=1e-3)
    # Identical views decorrelated per dimension give zero loss on the diagonal.
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert losses.barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-4)


def test_epsilon_loss_hand_computed():
    pred = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    eps = torch.tensor([[[0.0, 0.0]], [[1.0, 3.0]]])
    # per sample: (1 + 4)/2 = 2.5 and (1 + 9)/2 = 5 -> mean 3.75
    assert losses.epsilon_loss(pred, eps).item() == pytest.approx(3.75)
    assert losses.epsilon_loss(pred, eps, torch.tensor([1.0, 3.0])).item() == pytest.approx((2.5 + 15) / 4)
    with pytest.raises(ValueError):
        losses.epsilon_loss(pred, eps[:1])


def test_augment_views_differ_and_stay_in_range():
    x = torch.linspace(-1, 1, 2 * 32 * 32).view(2, 1, 32, 32)
    g = torch.Generator().manual_seed(0)
    a, b = augment.two_views(x, g)
    assert a.shape == b.shape == x.shape
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, b)
    g2 = torch.Generator().manual_seed(0)
    a2, _ = augment.two_views(x, g2)
    assert torch.equal(a, a2)
    # Blur of a constant image is the constant image.
    c = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(augment.gaussian_blur(c, (1.0, 2.0), 1.0), c, atol=1e-6)
    assert torch.equal(augment.horizontal_flip(x, 1.0), x.flip(-1))


def test_flows_parse_schedule_and_report():
    fl = flows.parse_flows("text-xray, xray-text,ct-mri".replace("xray-text,", ""))
    assert [f.name for f in fl] == ["text-xray", "ct-mri"]
    assert flows.parse_flows("mri-ct")[0].name == "ct-mri"
    with pytest.raises(ConfigError, match="unknown flow 'text-audio'"):
        flows.parse_flows("text-xray,text-audio")
    chain = flows.FlowSchedule(tuple(flows.parse_flows("text-xray,text-ct,ct-mri")), steps=9, mode="chain")
    assert [chain.flow(s).name for s in range(9)] == ["text-xray"] * 3 + ["text-ct"] * 3 + ["ct-mri"] * 3
    assert chain.frozen_sides(0) == set() and chain.frozen_sides(3) == {"text"} and chain.frozen_sides(6) == {"ct"}
    inter = flows.FlowSchedule(chain.flows, steps=9, mode="interleaved")
    assert [inter.flow(s).name for s in range(4)] == ["text-xray", "text-ct", "ct-mri", "text-xray"]
    with pytest.raises(ConfigError):
        flows.FlowSchedule(chain.flows, steps=9, mode="random")
    contrasts = flows.FlowSchedule(tuple(flows.parse_flows("t1-t2,pd-t1")), steps=4, mode="chain")
    assert contrasts.frozen_sides(3) == set()  # both sides are the MRI branch: never frozen
    rows = flows.added_parameters(chain.flows, {"text": 10, "xray": 5, "ct": 7, "mri": 3}.__getitem__)
    assert [r["added_parameters"] for r in rows] == [15, 7, 3]
    assert rows[-1]["cumulative_parameters"] == 25


def test_task_presets_follow_the_supplement():
    r = tasks.resolve_task("report", "iu-xray-phantom")
    assert (r.batch_size, r.max_report_length) == (16, 45)
    r = tasks.resolve_task("report-generation", "mimic-cxr")
    assert (r.batch_size, r.max_report_length) == (64, 50)
    m = tasks.get_task("mri-synthesis")
    assert (m.batch_size, m.lr, m.beta_end) == (8, 9.6e-5, 0.02)
    assert tasks.get_task("image-generation").plateau_factor == 0.1
    assert tasks.get_task("xray-generation").adam_betas == (0.9, 0.999)
    assert tasks.get_task("mri-ct-translation").batch_size == 64
    assert tasks.resolve_task("xray-generation", None, lr=5e-4, batch_size=None).lr == 5e-4
    with pytest.raises(ConfigError, match="unknown fine-tuning task"):
        tasks.get_task("segmentation")
