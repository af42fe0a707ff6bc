"""MeanFlow (lct.core.meanflow) against closed forms: the JVP against central differences on the shipped
backbones; Gaussian data, where the flow's velocity and the average velocity are known exactly, for the
identity, the loss and its gradient, and the samplers; the (r, t) draws; the data-parallel rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lct.core import NoiseLevels
from lct.core.c_schedules import AdaptiveC, ConstantC
from lct.core.coupling import MinibatchOT, NoCoupling
from lct.core.meanflow import MeanFlowObjective, kind_sample, kind_times, meanflow_terms
from lct.core.meanflow_math import (
    MeanFlowNet,
    meanflow_loss,
    meanflow_target,
    meanflow_times,
    onestep_sample,
    sample_times,
    twostep_sample,
    u_and_dudt,
    u_and_dudt_where_needed,
)
from lct.core.metrics import Cauchy, PseudoHuber
from lct.errors import LctError
from lct.nn import build_backbone

F64 = torch.float64
LEVELS = NoiseLevels()  # sigma_data = 0.5
SMALL = {
    "unet_tiny": {"model_channels": 8, "channel_mult": (1, 2), "num_blocks": 1},
    "dit_tiny": {"hidden_size": 16, "depth": 1},
}


def _net(name: str = "unet_tiny", seed: int = 0, **kw) -> MeanFlowNet:
    torch.manual_seed(seed)
    net = MeanFlowNet(build_backbone(name, in_channels=4, resolution=8, extra_time=True, **{**SMALL[name], **kw}))
    with torch.no_grad():  # zero-initialized output layers make u = 0: give every weight signal
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.double()


class ExactU(nn.Module):
    """u_theta = a u + b with u the average velocity of x ~ N(mu, s^2) per element, eps ~ N(0, 1): exact at
    a = 1, b = 0. With sigma_t^2 = (1 - t)^2 s^2 + t^2 the flow is z_r = (1 - r) mu + sigma_r / sigma_t
    (z - (1 - t) mu), so u = (z_t - z_r) / (t - r) = (z - (1 - t) mu) ((1 + s^2)(t + r) - 2 s^2) /
    (sigma_t (sigma_t + sigma_r)) - mu, which at r = t is the velocity v(z, t)."""

    def __init__(self, mu: float, s: float, a: float = 1.0):
        super().__init__()
        self.mu, self.s = mu, s
        self.a, self.b = nn.Parameter(torch.tensor(a, dtype=F64)), nn.Parameter(torch.tensor(0.0, dtype=F64))

    def sigma(self, t):
        return ((1 - t) ** 2 * self.s**2 + t**2).sqrt()

    def exact(self, z, r, t):
        r, t = (torch.as_tensor(v, dtype=F64).reshape(-1, 1, 1, 1) for v in (r, t))
        st, sr, s2 = self.sigma(t), self.sigma(r), self.s**2
        return (z - (1 - t) * self.mu) * ((1 + s2) * (t + r) - 2 * s2) / (st * (st + sr)) - self.mu

    def forward(self, z, r, t):
        return self.a * self.exact(z, r, t) + self.b


def _gaussian_batch(mu: float, s: float, n: int = 64, seed: int = 0, ratio: float = 0.5):
    """x ~ N(mu, s^2), eps ~ N(0, 1), (r, t) from the paper's sampler, shape (n, 1, 2, 2), in float64."""
    gen = torch.Generator().manual_seed(seed)
    x = mu + s * torch.randn(n, 1, 2, 2, generator=gen, dtype=F64)
    eps = torch.randn(n, 1, 2, 2, generator=gen, dtype=F64)
    r, t = (v.to(F64) for v in sample_times(n, gen, ratio=ratio))
    return x, eps, r, t


def _reflected(x, eps, r, t, mu: float, s: float):
    """The batch plus its mirror: the same z_t with x reflected about E[x | z_t], so that the conditional
    velocity eps - x is reflected about its posterior mean v(z_t, t): the conditional-velocity noise cancels."""
    tb = t.view(-1, 1, 1, 1)
    z = (1 - tb) * x + tb * eps
    var_t = (1 - tb) ** 2 * s**2 + tb**2
    m = mu + (1 - tb) * s**2 / var_t * (z - (1 - tb) * mu)  # E[x | z_t]
    x2 = 2 * m - x
    eps2 = (z - (1 - tb) * x2) / tb
    return torch.cat([x, x2]), torch.cat([eps, eps2]), torch.cat([r, r]), torch.cat([t, t])


@pytest.mark.parametrize("name,norm", [("unet_tiny", "groupnorm"), ("unet_tiny", "nsln"), ("dit_tiny", "layernorm")])
def test_jvp_equals_central_finite_differences(name, norm):
    net = _net(name, norm=norm)
    gen = torch.Generator().manual_seed(1)
    z, v = (torch.randn(3, 4, 8, 8, generator=gen, dtype=F64) for _ in range(2))
    t = torch.tensor([0.9, 0.5, 0.3], dtype=F64)
    r = torch.tensor([0.1, 0.5, 0.0], dtype=F64)
    u, dudt = u_and_dudt(net, z, r, t, v)
    h = 1e-6
    with torch.no_grad():
        fd = (net(z + h * v, r, t + h) - net(z - h * v, r, t - h)) / (2 * h)
        torch.testing.assert_close(u, net(z, r, t), atol=1e-12, rtol=1e-10)
    assert dudt.abs().max() > 1e-3  # the check is not vacuous
    torch.testing.assert_close(dudt, fd, atol=1e-7 * dudt.abs().max().item(), rtol=1e-6)
    # The tangent moves t and not r: the time labels 1000 t and 1000 (t - r) both move.
    with torch.no_grad():
        fd_z = (net(z + h * v, r, t) - net(z - h * v, r, t)) / (2 * h)
    assert (dudt - fd_z).abs().max() > 1e-3 * dudt.abs().max()


def test_the_exact_average_velocity_satisfies_the_meanflow_identity():
    exact = ExactU(mu=0.3, s=0.7)
    x, eps, r, t = _gaussian_batch(0.3, 0.7)
    z = (1 - t.view(-1, 1, 1, 1)) * x + t.view(-1, 1, 1, 1) * eps
    v = exact(z, t, t)  # the marginal velocity v(z, t) = u(z, t, t)
    u, dudt = u_and_dudt(exact, z, r, t, v)
    torch.testing.assert_close(meanflow_target(v, dudt, r, t), u, atol=1e-12, rtol=1e-10)
    # u(z, t, t) = v(z, t): the limit r -> t of the average velocity, and v against a derivative of the flow.
    h = 1e-6
    torch.testing.assert_close(exact(z, t - h, t), v, atol=1e-5, rtol=1e-5)
    s, mu, tb = 0.7, 0.3, t.view(-1, 1, 1, 1)
    sig = lambda q: ((1 - q) ** 2 * s**2 + q**2).sqrt()  # noqa: E731
    z_next = (1 - tb - h) * mu + sig(tb + h) / sig(tb) * (z - (1 - tb) * mu)
    z_prev = (1 - tb + h) * mu + sig(tb - h) / sig(tb) * (z - (1 - tb) * mu)
    torch.testing.assert_close((z_next - z_prev) / (2 * h), v, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("metric", [None, Cauchy(), PseudoHuber()], ids=["adaptive", "cauchy", "pseudo_huber"])
def test_loss_is_zero_at_the_exact_u_and_its_gradient_vanishes(metric):
    mu, s, c = 0.3, 0.7, 0.01
    x, eps, r, t = _gaussian_batch(mu, s, n=256)
    # With the marginal velocity as the tangent the target is u itself: every sample's loss is 0.
    exact = ExactU(mu, s)
    tb = t.view(-1, 1, 1, 1)
    z = (1 - tb) * x + tb * eps
    v = exact.exact(z, t, t)
    u, dudt = u_and_dudt(exact, z, r, t, v)
    per_sample = meanflow_loss(u, meanflow_target(v, dudt, r, t), metric, c)
    assert per_sample.abs().max() < 1e-20
    per_sample.mean().backward()
    assert abs(exact.a.grad) < 1e-12 and abs(exact.b.grad) < 1e-12
    # Trained on conditional velocities eps - x (the objective's), the gradient vanishes in expectation: exactly
    # over a batch and its mirror; away from the solution it does not.
    batch = _reflected(x, eps, r, t, mu, s)
    grads = {}
    for a in (1.0, 1.05):
        model = ExactU(mu, s, a)
        meanflow_terms(model, *batch, metric=metric, c=c).loss.backward()
        grads[a] = torch.stack([model.a.grad, model.b.grad])
    assert grads[1.0].abs().max() < 1e-9 * grads[1.05].abs().max()
    assert grads[1.05].abs().max() > 1e-3


@pytest.mark.parametrize("coupling", [NoCoupling(), MinibatchOT()], ids=["independent", "ot"])
def test_objective_loss_and_gradient_vanish_for_point_mass_data(coupling):
    # x = mu exactly: every conditional velocity is the marginal one, so the whole step is exact per sample.
    mu = 0.8
    exact = ExactU(mu, 0.0)
    objective = MeanFlowObjective(LEVELS, coupling, seed=3)
    x0 = torch.full((16, 1, 2, 2), LEVELS.sigma_data * mu, dtype=F64)  # lct's scale: sigma_data x
    out = objective.step(exact, x0, step=0)
    assert out.finite and out.terms.loss.abs() < 1e-20
    out.terms.loss.backward()
    assert abs(exact.a.grad) < 1e-12 and abs(exact.b.grad) < 1e-12
    assert objective.step(ExactU(mu, 0.0, a=1.1), x0, step=1).terms.loss > 1e-3


@pytest.mark.parametrize("t_mid", [None, 0.3])
def test_samplers_map_noise_to_the_exact_flow_endpoint(t_mid):
    mu, s = 0.3, 0.7
    exact = ExactU(mu, s)
    eps = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    endpoint = mu + s * eps  # z_0 of the flow from z_1 = eps (sigma_0 = s, sigma_1 = 1)
    torch.testing.assert_close(onestep_sample(exact, eps), endpoint, atol=1e-12, rtol=1e-12)
    two = twostep_sample(exact, eps) if t_mid is None else twostep_sample(exact, eps, t_mid)
    torch.testing.assert_close(two, endpoint, atol=1e-12, rtol=1e-12)
    # The registry's sampler returns lct's scale; a wrong u lands elsewhere.
    out = kind_sample(exact, eps, kind_times(LEVELS, 1), LEVELS)
    torch.testing.assert_close(out, LEVELS.sigma_data * endpoint, atol=1e-12, rtol=1e-12)
    assert (onestep_sample(ExactU(mu, s, a=0.9), eps) - endpoint).abs().max() > 1e-2


def test_sampling_times():
    assert meanflow_times(1) == [1.0, 0.0] and meanflow_times(2) == [1.0, 0.5, 0.0]
    assert meanflow_times(2, 0.3) == [1.0, 0.3, 0.0] and len(meanflow_times(4)) == 5
    # lct's sigma_mid becomes the flow time of the same noise-to-signal ratio: t / (1 - t) = sigma / sigma_data.
    t_mid = kind_times(LEVELS, 2, LEVELS.sigma_mid)[1]
    assert math.isclose(t_mid / (1 - t_mid), LEVELS.sigma_mid / LEVELS.sigma_data)
    for bad in (0, 1.5, "2"):
        with pytest.raises(LctError, match="--nfe"):
            meanflow_times(bad)
    with pytest.raises(LctError, match=r"\(0, 1\)"):
        meanflow_times(2, 1.0)


def test_draws_obey_the_ratio_the_order_and_the_logit_normal():
    n = 200_000
    r, t = sample_times(n, torch.Generator().manual_seed(0))
    assert bool((r <= t).all()) and bool(((t > 0) & (t < 1)).all())
    differ = r < t
    assert abs(differ.float().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    # r is the smaller and t the larger of two N(-0.4, 1) logits: means -0.4 -+ 1/sqrt(pi).
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    assert abs(logit(r[differ]).mean().item() - (-0.4 - 1 / math.sqrt(math.pi))) < 0.02
    assert abs(logit(t).mean().item() - (-0.4 + 1 / math.sqrt(math.pi))) < 0.01
    r0, t0 = sample_times(1000, torch.Generator().manual_seed(0), ratio=0.0)
    assert torch.equal(r0, t0)
    r1, t1 = sample_times(1000, torch.Generator().manual_seed(0), ratio=1.0)
    assert bool((r1 < t1).all())


@pytest.mark.parametrize("scope", ["independent", "ot_global"])
def test_a_two_process_step_equals_the_single_process_step(scope):
    net = _net()
    x0 = 0.5 * torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(5), dtype=F64)
    coupling = (lambda: NoCoupling()) if scope == "independent" else (lambda: MinibatchOT(scope="global"))
    gather = lambda x: x0 / LEVELS.sigma_data  # noqa: E731  (what all_gather returns: every rank's x)

    def loss_and_grads(rank, world, rows):
        net.zero_grad()
        out = MeanFlowObjective(LEVELS, coupling(), seed=7).step(net, x0[rows], 0, rank, world, gather)
        out.terms.loss.backward()
        return out.terms.loss.detach(), [p.grad.clone() for p in net.parameters()]

    loss, grads = loss_and_grads(0, 1, slice(0, 4))
    parts = [loss_and_grads(k, 2, slice(2 * k, 2 * k + 2)) for k in range(2)]
    torch.testing.assert_close((parts[0][0] + parts[1][0]) / 2, loss, atol=1e-12, rtol=1e-10)
    for g, g0, g1 in zip(grads, parts[0][1], parts[1][1]):
        torch.testing.assert_close((g0 + g1) / 2, g, atol=1e-12, rtol=1e-9)


def test_generator_state_resumes_the_draws():
    net = _net()
    x0 = torch.randn(4, 4, 8, 8, dtype=F64)
    first = MeanFlowObjective(LEVELS, seed=2)
    first.step(net, x0, 0)
    state = first.get_extra_state()
    again = MeanFlowObjective(LEVELS, seed=99)
    again.set_extra_state(state)
    a, b = first.step(net, x0, 1), again.step(net, x0, 1)
    assert torch.equal(a.terms.r, b.terms.r) and torch.equal(a.terms.t, b.terms.t)
    torch.testing.assert_close(a.terms.loss, b.terms.loss, atol=0, rtol=0)


def test_robust_metric_uses_its_c_schedule_and_logs_it():
    net, x0 = _net(), torch.randn(4, 4, 8, 8, dtype=F64)
    out = MeanFlowObjective(LEVELS, metric=Cauchy(), c=ConstantC(dim=256, value=0.05)).step(net, x0, 0)
    assert out.c == 0.05 and out.finite
    assert (
        MeanFlowObjective(LEVELS, metric=Cauchy(), c=ConstantC(dim=256, value=0.05)).diagnostics(out)["train/c"] == 0.05
    )
    torch.testing.assert_close(out.terms.per_sample, Cauchy()(out.terms.residual, 0.05))


def test_bad_options_and_backbones_are_refused_with_the_fix():
    with pytest.raises(LctError, match="extra_time=true"):
        MeanFlowNet(build_backbone("unet_tiny", in_channels=4, resolution=8))
    with pytest.raises(LctError, match="ratio"):
        MeanFlowObjective(LEVELS, ratio=1.5)
    with pytest.raises(LctError, match="c_schedule=ict"):
        MeanFlowObjective(LEVELS, metric=Cauchy(), c=AdaptiveC(dim=256))
    with pytest.raises(LctError, match="method.c"):
        MeanFlowObjective(LEVELS, metric=Cauchy())


def test_nonfinite_data_skips_the_step_and_names_it():
    x0 = torch.randn(4, 4, 8, 8, dtype=F64)
    x0[1, 0, 0, 0] = float("nan")
    out = MeanFlowObjective(LEVELS).step(_net(), x0, 0)
    assert not out.finite and "x0" in out.error


def test_the_network_embeds_t_and_t_minus_r():
    # The paper's best positional embedding is (t, t - r), t itself (time_scale 1): at r = t the second label is 0
    # whatever t is; time_scale multiplies both (1000: an lct before the key).
    net = _net()
    z = torch.randn(2, 4, 8, 8, dtype=F64)
    r, t = torch.tensor([0.2, 0.7], dtype=F64), torch.tensor([0.6, 0.7], dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(net(z, r, t), net.backbone(z, t, t - r), atol=0, rtol=0)
        labels = torch.full((2,), 0.5, dtype=F64), torch.zeros(2, dtype=F64)
        torch.testing.assert_close(net(z, 0.5, 0.5), net.backbone(z, *labels), atol=0, rtol=0)
        old = MeanFlowNet(net.backbone, time_scale=1000.0)
        torch.testing.assert_close(old(z, r, t), net.backbone(z, 1000 * t, 1000 * (t - r)), atol=0, rtol=0)


def test_the_paper_weighting_is_a_robust_metric_with_a_matched_scale():
    # p = 1: the gradient of sg(w) ||Delta||^2 is Cauchy's with 2 c^2 D = c_paper; p = 1/2: pseudo-Huber's times
    # 2 sqrt(D) with c^2 D = c_paper (docs/method.md §9).
    delta = 0.05 * torch.randn(8, 1, 4, 4, dtype=F64)
    d, c_paper, zero = 16, 1e-3, torch.zeros_like(delta)

    def grad(**kw):
        u = delta.clone().requires_grad_(True)
        meanflow_loss(u, zero, **kw).sum().backward()
        return u.grad

    torch.testing.assert_close(grad(p=1.0, c_adaptive=c_paper), grad(metric=Cauchy(), c=math.sqrt(c_paper / (2 * d))))
    pseudo = grad(metric=PseudoHuber(), c=math.sqrt(c_paper / d))
    torch.testing.assert_close(grad(p=0.5, c_adaptive=c_paper), 2 * math.sqrt(d) * pseudo)
    assert not torch.allclose(grad(p=1.0, c_adaptive=c_paper), grad(metric=Cauchy(), c=0.1))


def test_a_two_argument_call_is_the_velocity():
    net, z = _net(), torch.randn(2, 4, 8, 8, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(net(z, 0.4), net(z, 0.4, 0.4), atol=0, rtol=0)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_step_under_bf16_autocast_trains_in_fp32(name):
    # Under CPU bf16 autocast the UNet's convolutions refuse forward-mode dual inputs: the JVP runs in fp32.
    net = _net(name).float()
    x0 = 0.5 * torch.randn(4, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MeanFlowObjective(LEVELS, seed=1).step(net, x0, 0)
    out.terms.loss.backward()
    reference = MeanFlowObjective(LEVELS, seed=1).step(net, x0, 0)
    assert out.finite and out.terms.residual.dtype == torch.float32
    torch.testing.assert_close(out.terms.loss, reference.terms.loss, atol=0, rtol=0)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("moving", [[1, 0, 0, 1, 0, 0], [1] * 6, [0] * 6])
def test_the_jvp_on_the_moving_rows_only_is_the_same_loss_and_gradient(moving):
    # The r = t rows' target is v whatever d/dt u is: skipping their tangent changes nothing (float64, UNet).
    net = _net()
    gen = torch.Generator().manual_seed(3)
    z, v = (torch.randn(6, 4, 8, 8, generator=gen, dtype=F64) for _ in range(2))
    t = torch.rand(6, generator=gen, dtype=F64) * 0.8 + 0.2
    r = torch.where(torch.tensor(moving, dtype=torch.bool), t * 0.3, t)
    grads, outs = [], []
    for fn in (u_and_dudt, u_and_dudt_where_needed):
        net.zero_grad()
        u, dudt = fn(net, z, r, t, v)
        target = meanflow_target(v, dudt, r, t)
        meanflow_loss(u, target).sum().backward()
        outs.append((u.detach(), target))
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)
