"""Preconditioning, robust metrics and c schedules against closed forms, diffusers, and limits."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lct.core import (
    PAPER,
    AdaptiveC,
    ConsistencyFunction,
    ConstantC,
    OnlineC,
    boundary_scalings,
    c_noise,
    karras_sigmas,
)
from lct.errors import LctError

CONF = Path(__file__).resolve().parents[1] / "conf"


def _instantiate(path: Path, **kwargs):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.load(path), **kwargs)


# Every metric the configs offer, built from its YAML (conf/metric/<name>.yaml).
METRICS = {p.stem: _instantiate(p) for p in sorted((CONF / "metric").glob("*.yaml"))}


def robust_metric(name, d, c):
    return METRICS[name](d, c)


class Affine(nn.Module):
    """A stand-in backbone with parameters and a nonzero output."""

    def __init__(self, c=4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.t = nn.Linear(1, c)

    def forward(self, x, c_noise):
        return self.conv(x) + self.t(c_noise[:, None].to(x) / 1000)[:, :, None, None]


def test_core_imports_no_lightning_hydra_distributed():
    code = (
        "import sys, torch; before = set(sys.modules); import lct.core; "
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'hydra', 'omegaconf', 'lightning_fabric') "
        "or m.startswith('torch.distributed')]; print(new); assert not new, new"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scalings_closed_form_and_diffusers():
    from diffusers import CMStochasticIterativeScheduler

    sched = CMStochasticIterativeScheduler(num_train_timesteps=641)
    s = karras_sigmas(641)
    c_skip, c_out, c_in = boundary_scalings(s, PAPER)
    d_skip, d_out = sched.get_scalings_for_boundary_condition(s)
    torch.testing.assert_close(c_skip, d_skip, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(c_out, d_out, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(c_in, 1 / (s**2 + 0.25).sqrt())
    np.testing.assert_allclose(c_noise(s).numpy(), sched.sigma_to_t(s.numpy()), rtol=1e-12)
    assert c_noise(0.002).item() == pytest.approx(-1553.7, abs=0.1)
    assert c_noise(80.0).item() == pytest.approx(1095.5, abs=0.1)


def test_boundary_condition_f_at_sigma_min_is_identity():
    torch.manual_seed(0)
    f = ConsistencyFunction(Affine(), PAPER).double()
    nn.init.normal_(f.backbone.conv.weight)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(f(x, 0.002), x, rtol=0, atol=0)
    assert not torch.allclose(f(x, 1.0), x)


@pytest.mark.parametrize("sigma", [0.001, 81.0, float("nan"), -1.0])
def test_sigma_out_of_range_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        boundary_scalings(sigma, PAPER)
    with pytest.raises(ValueError, match="sigma"):
        ConsistencyFunction(Affine(), PAPER)(torch.zeros(1, 4, 8, 8), sigma)


def _m(d):
    return d.flatten(1).square().mean(1)


def test_metrics_closed_forms():
    torch.manual_seed(0)
    d, c = torch.randn(5, 4, 8, 8, dtype=torch.float64) * 0.1, 0.03456
    m = _m(d)
    expect = {
        "l2": m,
        "pseudo_huber": (m + c**2).sqrt() - c,
        "cauchy": torch.log(1 + m / (2 * c**2)),
        "geman_mcclure": 2 * m / (m + 4 * c**2),
    }
    for name, e in expect.items():
        torch.testing.assert_close(robust_metric(name, d, c), e, rtol=1e-12, atol=0)
    sq = d.flatten(1).square()
    torch.testing.assert_close(robust_metric("cauchy_elementwise", d, c), torch.log1p(sq / (2 * c**2)).mean(1))
    torch.testing.assert_close(robust_metric("pseudo_huber_elementwise", d, c), ((sq + c**2).sqrt() - c).mean(1))
    torch.testing.assert_close(robust_metric("geman_mcclure_elementwise", d, c), (2 * sq / (sq + 4 * c**2)).mean(1))
    from lct.core import L2

    torch.testing.assert_close(L2(elementwise=True)(d, c), sq.mean(1))


@pytest.mark.parametrize("name", METRICS)
def test_metric_zero_at_zero_residual(name):
    assert robust_metric(name, torch.zeros(3, 2, 4, 4), 0.01).abs().max().item() == 0.0


def test_cauchy_limits():
    c = 0.1
    small = torch.full((1, 16), 1e-4, dtype=torch.float64)  # m = 1e-8 << c^2
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


def test_metric_configs_cover_the_paper_metrics():
    # Table 2(c)'s metrics are offered (a config added beside them needs no edit here).
    paper = {"l2", "pseudo_huber", "cauchy", "geman_mcclure"}
    assert paper | {f"{name}_elementwise" for name in paper - {"l2"}} <= set(METRICS)
    assert METRICS["cauchy_elementwise"].elementwise and not METRICS["cauchy"].elementwise


def _run_config(tmp_path, override: str):
    from train_utils import compose_cfg

    return compose_cfg(tmp_path, [override])


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "metric").glob("*.yaml")))
def test_every_metric_config_composes_and_measures(tmp_path, name):
    from lct.builders import instantiate_part

    metric = instantiate_part(_run_config(tmp_path, f"metric={name}").method.metric, "method.metric")
    d = torch.randn(3, 2, 4, 4)
    rho = metric(d, 0.05)
    assert rho.shape == (3,) and bool(torch.isfinite(rho).all()) and bool((rho > 0).all())


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "c_schedule").glob("*.yaml")))
def test_every_c_schedule_config_composes_and_follows_the_protocol(tmp_path, name):
    from lct.builders import instantiate_part

    cfg = _run_config(tmp_path, f"c_schedule={name}")
    c = instantiate_part(cfg.method.c, "method.c", dim=4 * 8 * 8, total_steps=100)
    values = [c(n, k) for n, k in ((11, 0), (21, 50), (41, 99))]
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values)
    c.observe(torch.randn(8, 4, 8, 8) * 0.1)
    restored = instantiate_part(cfg.method.c, "method.c", dim=4 * 8 * 8, total_steps=100)
    restored.load_state_dict(c.state_dict())
    assert [restored(n, k) for n, k in ((11, 0), (21, 50))] == [c(n, k) for n, k in ((11, 0), (21, 50))]


def test_metric_bad_input():
    with pytest.raises(ValueError, match="c must be > 0"):
        robust_metric("cauchy", torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="batched"):
        robust_metric("l2", torch.zeros(3), 0.1)


def test_c_schedules():
    D = 4 * 32 * 32
    ad = AdaptiveC(D)
    assert ad(11, 0) == pytest.approx(0.03456) and ad(21, 0) == pytest.approx(0.013636, rel=5e-4)
    build = lambda name, **kw: _instantiate(CONF / "c_schedule" / f"{name}.yaml", dim=D, total_steps=1000, **kw)  # noqa: E731
    assert build("ict")(641, 0) == pytest.approx(0.03456)
    assert build("constant")(21, 0) == 0.01
    assert build("adaptive", s0=10)(21, 0) == ad(21, 0) and build("online")(11, 0) == pytest.approx(0.03456)
    fitted = AdaptiveC(D, s0=10, slope=-1.0, offset=-1.0)  # ln c = slope ln(N-1) + offset
    assert fitted(21, 0) == pytest.approx(math.exp(-math.log(20) - 1.0), rel=1e-12)
    with pytest.raises(LctError, match="method.c.value"):
        ConstantC(D, value=0.0)


def test_the_run_length_leaves_the_shipped_schedules_bit_identical():
    # K reaches every schedule at build time; none of the shipped ones depends on it (N(k) carries the curriculum).
    D, grid = 4 * 32 * 32, [(n, k) for n in (11, 21, 41, 81, 161, 321, 641) for k in (0, 7, 10**6)]
    for make in (ConstantC, AdaptiveC, lambda dim, **kw: ConstantC(dim, value=0.3, **kw)):
        assert [make(D, total_steps=294_000)(n, k) for n, k in grid] == [make(D)(n, k) for n, k in grid]
    assert AdaptiveC(D, total_steps=5)(21, 3) == pytest.approx(math.exp(-1.15 * math.log(20) - 0.85), rel=1e-14)


def test_online_c_loads_a_checkpoint_state_written_before_k_reached_the_schedules():
    on = OnlineC(64, total_steps=1000)
    on.load_state_dict({"std_ema": 0.125, "initialized": True})  # the layout stored under objective._extra_state["c"]
    assert on(11, 0) == 0.125 and on.state_dict() == {"std_ema": 0.125, "initialized": True}


def test_stateless_schedules_follow_the_protocol():
    for sched in (ConstantC(64), AdaptiveC(64)):
        sched.observe(torch.ones(2, 3))
        assert sched.state_dict() == {}
        sched.load_state_dict({})


def test_online_c_tracks_residual_std_and_roundtrips_state():
    on = OnlineC(64, momentum=0.5)
    assert on(11, 0) == pytest.approx(0.00054 * 8)
    torch.manual_seed(0)
    on.observe(torch.randn(4096) * 0.2)
    assert on(11, 0) == pytest.approx(0.2, rel=0.05)
    on.observe(torch.randn(4096) * 0.1)
    assert on(21, 0) == pytest.approx(0.15, rel=0.05)
    other = OnlineC(64)
    other.load_state_dict(on.state_dict())
    assert other(21, 0) == on(21, 0)
    on.observe(torch.tensor([float("nan")]))  # a NaN residual never poisons the estimate
    assert math.isfinite(on(21, 0))
