"""Preconditioning, robust metrics and c schedules against closed forms, diffusers, and limits."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lct.core import (METRICS, AdaptiveC, ConsistencyFunction, OnlineC, boundary_scalings, c_noise,
                      karras_sigmas, make_c_schedule, robust_metric)


class Affine(nn.Module):
    """A stand-in backbone with parameters and a nonzero output."""

    def __init__(self, c=4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.t = nn.Linear(1, c)

    def forward(self, x, c_noise):
        return self.conv(x) + self.t(c_noise[:, None].to(x) / 1000)[:, :, None, None]


def test_core_imports_no_lightning_hydra_distributed():
    code = ("import sys, torch; before = set(sys.modules); import lct.core; "
            "new = [m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'hydra', 'omegaconf', 'lightning_fabric') "
            "or m.startswith('torch.distributed')]; print(new); assert not new, new")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scalings_closed_form_and_diffusers():
    from diffusers import CMStochasticIterativeScheduler
    sched = CMStochasticIterativeScheduler(num_train_timesteps=641)
    s = karras_sigmas(641)
    c_skip, c_out, c_in = boundary_scalings(s)
    d_skip, d_out = sched.get_scalings_for_boundary_condition(s)
    torch.testing.assert_close(c_skip, d_skip, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(c_out, d_out, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(c_in, 1 / (s**2 + 0.25).sqrt())
    np.testing.assert_allclose(c_noise(s).numpy(), sched.sigma_to_t(s.numpy()), rtol=1e-12)
    assert c_noise(0.002).item() == pytest.approx(-1553.7, abs=0.1)
    assert c_noise(80.0).item() == pytest.approx(1095.5, abs=0.1)


def test_boundary_condition_f_at_sigma_min_is_identity():
    torch.manual_seed(0)
    f = ConsistencyFunction(Affine()).double()
    nn.init.normal_(f.backbone.conv.weight)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(f(x, 0.002), x, rtol=0, atol=0)
    assert not torch.allclose(f(x, 1.0), x)


@pytest.mark.parametrize("sigma", [0.001, 81.0, float("nan"), -1.0])
def test_sigma_out_of_range_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        boundary_scalings(sigma)
    with pytest.raises(ValueError, match="sigma"):
        ConsistencyFunction(Affine())(torch.zeros(1, 4, 8, 8), sigma)


def _m(d):
    return d.flatten(1).square().mean(1)


def test_metrics_closed_forms():
    torch.manual_seed(0)
    d, c = torch.randn(5, 4, 8, 8, dtype=torch.float64) * 0.1, 0.03456
    m = _m(d)
    expect = {"l2": m, "pseudo_huber": (m + c**2).sqrt() - c, "cauchy": torch.log(1 + m / (2 * c**2)),
              "geman_mcclure": 2 * m / (m + 4 * c**2)}
    for name, e in expect.items():
        torch.testing.assert_close(robust_metric(name, d, c), e, rtol=1e-12, atol=0)
    sq = d.flatten(1).square()
    torch.testing.assert_close(robust_metric("cauchy_elementwise", d, c), torch.log1p(sq / (2 * c**2)).mean(1))
    torch.testing.assert_close(robust_metric("pseudo_huber_elementwise", d, c), ((sq + c**2).sqrt() - c).mean(1))
    torch.testing.assert_close(robust_metric("geman_mcclure_elementwise", d, c), (2 * sq / (sq + 4 * c**2)).mean(1))
    torch.testing.assert_close(robust_metric("l2_elementwise", d, c), m)


@pytest.mark.parametrize("name", METRICS)
def test_metric_zero_at_zero_residual(name):
    assert robust_metric(name, torch.zeros(3, 2, 4, 4), 0.01).abs().max().item() == 0.0


def test_cauchy_limits():
    c = 0.1
    small = torch.full((1, 16), 1e-4, dtype=torch.float64)           # m = 1e-8 << c^2
    assert robust_metric("cauchy", small, c).item() == pytest.approx(1e-8 / (2 * c**2), rel=1e-6)
    # Gradient wrt d is bounded for large residuals (it decays like 1/|d|), unlike L2's.
    for scale in (1e2, 1e4, 1e6):
        d = torch.full((1, 16), scale, dtype=torch.float64, requires_grad=True)
        robust_metric("cauchy", d, c).sum().backward()
        assert d.grad.abs().max().item() <= 1.0 / (c * math.sqrt(2)) / 16 + 1e-12
    assert robust_metric("geman_mcclure", torch.full((1, 4), 1e6), 0.1).item() == pytest.approx(2.0, rel=1e-6)


def test_pseudo_huber_limits():
    c = 0.5
    d = torch.full((1, 4), 1e-3, dtype=torch.float64)
    assert robust_metric("pseudo_huber", d, c).item() == pytest.approx(1e-6 / (2 * c), rel=1e-5)
    d = torch.full((1, 4), 1e4, dtype=torch.float64)
    assert robust_metric("pseudo_huber", d, c).item() == pytest.approx(1e4 - c, rel=1e-6)


def test_metric_bad_input():
    with pytest.raises(ValueError, match="unknown robust metric 'huber'"):
        robust_metric("huber", torch.zeros(2, 3), 0.1)
    with pytest.raises(ValueError, match="c must be > 0"):
        robust_metric("cauchy", torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="batched"):
        robust_metric("l2", torch.zeros(3), 0.1)


def test_c_schedules():
    D = 4 * 32 * 32
    ad = AdaptiveC(D)
    assert ad(11) == pytest.approx(0.03456) and ad(21) == pytest.approx(0.013636, rel=5e-4)
    assert make_c_schedule("ict", D)(641) == pytest.approx(0.03456)
    assert make_c_schedule("constant", D, value=0.01)(21) == 0.01
    with pytest.raises(ValueError, match="unknown c schedule"):
        make_c_schedule("cosine", D)
    with pytest.raises(ValueError, match="needs a value"):
        make_c_schedule("constant", D)


def test_online_c_tracks_residual_std_and_roundtrips_state():
    on = OnlineC(64, momentum=0.5)
    assert on(11) == pytest.approx(0.00054 * 8)
    torch.manual_seed(0)
    on.update(torch.randn(4096) * 0.2)
    assert on(11) == pytest.approx(0.2, rel=0.05)
    on.update(torch.randn(4096) * 0.1)
    assert on(21) == pytest.approx(0.15, rel=0.05)
    other = OnlineC(64)
    other.load_state_dict(on.state_dict())
    assert other(21) == on(21)
    on.update(torch.tensor([float("nan")]))          # a NaN residual never poisons the estimate
    assert math.isfinite(on(21))
