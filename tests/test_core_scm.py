"""sCM (lct.core.scm): the JVP against finite differences on every backbone, the loss and its gradient at the
closed-form solution for Gaussian data, the samplers at that solution, the boundary condition, the data-parallel
draws and the registry entry."""

import math

import pytest
import torch
from torch import nn

from lct.core import PAPER, NoiseLevels, get_kind
from lct.core.jvp import jvp
from lct.core.metrics import Cauchy
from lct.core.scm import (
    SCMObjective,
    TrigFlowFunction,
    check_times,
    proposal_times,
    scm_loss,
    scm_sample,
    scm_tangent,
    scm_times,
)
from lct.errors import LctError
from lct.nn import dit_tiny, unet_tiny

SD = 0.5  # sigma_d
S = 0.8  # the Gaussian data's std: x0 ~ N(0, S^2 I)


def _randomised(backbone: nn.Module) -> nn.Module:
    """The backbone in float64 with every parameter redrawn (its zero-initialised output layers would make F = 0)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in backbone.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return backbone.double()


@pytest.mark.parametrize("make", [unet_tiny, dit_tiny], ids=["unet_tiny", "dit_tiny"])
def test_jvp_equals_central_finite_differences(make):
    torch.manual_seed(0)
    f = TrigFlowFunction(_randomised(make()), PAPER).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    v = torch.randn_like(x)
    t = torch.tensor([0.3, 1.2], dtype=torch.float64)
    out, tangent = jvp(f.raw, (x, t), (v, torch.ones_like(t)))
    eps = 1e-7  # central differences: O(eps^2) truncation, O(1e-16 / eps) rounding
    fd = (f.raw(x + eps * v, t + eps) - f.raw(x - eps * v, t - eps)) / (2 * eps)
    scale = tangent.abs().max()
    assert scale > 1e-2  # not a trivially zero derivative
    torch.testing.assert_close(out, f.raw(x, t), rtol=1e-12, atol=1e-12)
    assert (tangent - fd).abs().max() < 1e-7 * scale


def test_jvp_in_float32_matches_float64_on_the_dit():
    """The training dtype: the DiT's attention (the math kernel under lct.core.jvp.jvp) differentiates in float32
    to float32 precision."""
    torch.manual_seed(0)
    f = TrigFlowFunction(_randomised(dit_tiny()), PAPER).double()
    x, v, t = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.rand(2)
    exact = jvp(f.raw, (x, t.double()), (v, torch.ones(2, dtype=torch.float64)))[1]
    f32 = jvp(f.float().raw, (x.float(), t), (v.float(), torch.ones(2)))[1]
    assert (f32.double() - exact).abs().max() < 1e-3 * exact.abs().max()


# ----------------------------------------------------------------------------
# Gaussian data: x_t ~ N(0, v(t) I) with v(t) = cos^2 t S^2 + sin^2 t SD^2; the PF-ODE is
# dx/dt = sin t cos t (SD^2 - S^2) / v(t) x, so x(t) = x(0) sqrt(v(t)) / S and the consistency function is
# f*(x, t) = S x / sqrt(v(t)); from f = cos t x - sin t SD F, the exact network is
# F*(x, t) = (cos t - S / sqrt(v(t))) x / (sin t SD).


def _v(t):
    return torch.cos(t) ** 2 * S**2 + torch.sin(t) ** 2 * SD**2


def _col(t, x):
    return t.view(-1, *([1] * (x.ndim - 1)))


class ExactF(nn.Module):
    """The closed-form TrigFlow network for x0 ~ N(0, S^2 I), scaled by (1 + theta) (theta = 0: exact)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.sigma_data = SD

    def raw(self, x, t):
        a = (torch.cos(t) - S / _v(t).sqrt()) / (torch.sin(t) * SD)
        return (1 + self.theta) * _col(a, x) * x

    def weighting(self, t):
        return torch.zeros_like(t)

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return _col(torch.cos(t), x) * x - _col(torch.sin(t), x) * SD * self.raw(x, t)


def _gaussian_batch(n, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x0 = S * torch.randn(n, d, 1, 1, generator=gen, dtype=torch.float64)
    z = SD * torch.randn(n, d, 1, 1, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 1.5 + 0.02
    return x0, z, t


def test_tangent_is_zero_along_the_pf_ode_at_the_exact_solution():
    f = ExactF()
    x0, z, t = _gaussian_batch(64)
    x_t = _col(torch.cos(t), x0) * x0 + _col(torch.sin(t), x0) * z
    ode = _col(torch.sin(t) * torch.cos(t) * (SD**2 - S**2) / _v(t), x_t) * x_t  # dx_t/dt of the PF-ODE
    F, dF = jvp(f.raw, (x_t, t), (ode, torch.ones_like(t)))
    g, norm = scm_tangent(F, dF, x_t, ode, t, SD, r=1.0, c=0.0)
    assert norm.max() < 1e-12
    # A wrong network (F* scaled by 1.1) has a clearly non-zero tangent: the check can fail.
    with torch.no_grad():
        f.theta.fill_(0.1)
    F, dF = jvp(f.raw, (x_t, t), (ode, torch.ones_like(t)))
    assert scm_tangent(F, dF, x_t, ode, t, SD, r=1.0, c=0.0)[1].min() > 1e-3


def _antithetic_grad(theta: float, n: int = 256) -> float:
    """The consistency-training loss's gradient w.r.t. theta on pairs (x0, z), (x0', z') that share x_t, with
    x0' reflected about E[x0 | x_t] = cos t S^2 / v(t) x_t: g is linear in (x0, z) given x_t, so each pair's
    mean tangent is E[g | x_t] exactly, the tangent along the PF-ODE."""
    f = ExactF()
    with torch.no_grad():
        f.theta.fill_(theta)
    obj = SCMObjective(NoiseLevels(sigma_data=SD), tangent_c=0.0, warmup_steps=0)
    x0, z, t = _gaussian_batch(n, seed=1)
    cos, sin = _col(torch.cos(t), x0), _col(torch.sin(t), x0)
    x_t = cos * x0 + sin * z
    x0_mate = 2 * cos * S**2 / _col(_v(t), x0) * x_t - x0
    z_mate = (x_t - cos * x0_mate) / sin
    obj.terms(f, torch.cat([x0, x0_mate]), torch.cat([z, z_mate]), torch.cat([t, t]), r=1.0).loss.backward()
    return float(f.theta.grad)


def test_training_gradient_vanishes_at_the_exact_solution():
    """With the conditional velocity cos t z - sin t x0 (consistency training), E[g | x_t] is the PF-ODE's
    tangent, zero at f*: the gradient vanishes there; away from f* it does not."""
    assert abs(_antithetic_grad(0.0)) < 1e-12
    assert abs(_antithetic_grad(0.1)) > 1e-3


def test_samplers_invert_the_forward_process_at_the_closed_form():
    f = ExactF()
    x0, _, _ = _gaussian_batch(32)
    n = x0 / S  # the unit noise of x0's trajectory: x(pi/2) = x0 sqrt(v(pi/2)) / S = SD n
    torch.testing.assert_close(scm_sample(f, n, [math.pi / 2], SD), x0, rtol=1e-12, atol=1e-12)
    # 2 NFE: f*(cos t x0 + sin t SD z', t) with z' from the generator, exactly.
    t_mid = 1.1
    two = scm_sample(f, n, [math.pi / 2, t_mid], SD, torch.Generator().manual_seed(3))
    z = torch.randn(n.shape, generator=torch.Generator().manual_seed(3), dtype=n.dtype)
    x_mid = math.cos(t_mid) * x0 + math.sin(t_mid) * SD * z
    torch.testing.assert_close(
        two, S * x_mid / _v(torch.tensor(t_mid, dtype=torch.float64)).sqrt(), rtol=1e-12, atol=1e-12
    )


def test_boundary_condition_f_x_0_is_x():
    f = TrigFlowFunction(_randomised(unet_tiny()), PAPER).double()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    assert f.raw(x, torch.zeros(3, dtype=torch.float64)).abs().max() > 1e-3  # F itself is not zero there
    torch.testing.assert_close(f(x, 0.0), x, rtol=0, atol=0)


class VelocityF(ExactF):
    """F = (dx_t/dt) / SD for x0 = 0 (x_t = sin t z, dx_t/dt = cos t z): at r = 0 the tangent is exactly 0."""

    def raw(self, x, t):
        return (1 + self.theta) * _col(torch.cos(t) / (torch.sin(t) * SD), x) * x


def test_zero_loss_when_student_equals_target_at_r_0_with_g_0():
    obj = SCMObjective(NoiseLevels(sigma_data=SD), warmup_steps=100)
    assert obj.warmup(0) == 0.0 and obj.warmup(50) == 0.5 and obj.warmup(500) == 1.0
    x0, z, t = _gaussian_batch(16)
    terms = obj.terms(VelocityF(), torch.zeros_like(x0), z, t, r=obj.warmup(0))
    assert abs(float(terms.loss)) < 1e-28 and terms.residual.abs().max() < 1e-14  # zero up to rounding
    off = VelocityF()
    with torch.no_grad():
        off.theta.fill_(0.1)  # sigma_d F^- != dx_t/dt: the tangent, and the loss, are not zero
    assert obj.terms(off, torch.zeros_like(x0), z, t, r=0.0).loss > 1e-6


def test_loss_weighting_and_robust_metric():
    F = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    g = torch.randn_like(F)
    w = torch.tensor([0.0, 1.0, -1.0, 2.0], dtype=torch.float64)
    per, d = scm_loss(F, torch.zeros_like(F), g, w)
    m = (F - g).flatten(1).square().mean(1)
    torch.testing.assert_close(per, torch.exp(w) * m - w)
    cauchy, _ = scm_loss(F, torch.zeros_like(F), g, w, Cauchy(), 0.1)
    torch.testing.assert_close(cauchy, torch.exp(w) * torch.log1p(m / (2 * 0.1**2)) - w)
    # tangent normalisation: g / (||g|| + c)
    normed, norm = scm_tangent(torch.zeros_like(F), torch.zeros_like(F), F, g, torch.full((4,), 0.7), 1.0, 1.0, 0.1)
    raw, _ = scm_tangent(torch.zeros_like(F), torch.zeros_like(F), F, g, torch.full((4,), 0.7), 1.0, 1.0, 0.0)
    torch.testing.assert_close(normed, raw / (norm.view(-1, 1, 1, 1) + 0.1))


def test_proposal_and_sampling_times():
    tau = torch.tensor([-1.0, 0.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(torch.tan(proposal_times(tau, SD)), torch.exp(tau) / SD)
    levels = NoiseLevels(sigma_data=SD, sigma_mid=SD * math.tan(1.1))
    assert scm_times(levels, 1) == [math.pi / 2]
    assert scm_times(levels, 2) == pytest.approx([math.pi / 2, 1.1], abs=1e-12)
    with pytest.raises(LctError, match="1 or 2 NFE"):
        scm_times(levels, 3)
    with pytest.raises(LctError, match="descending within"):
        check_times([80.0])


def test_a_two_rank_step_equals_the_single_process_step():
    torch.manual_seed(0)
    f = TrigFlowFunction(unet_tiny(), PAPER)
    x0 = 0.5 * torch.randn(8, 4, 8, 8)
    single = SCMObjective(PAPER, warmup_steps=10, seed=3).step(f, x0, 4)
    ranks = [SCMObjective(PAPER, warmup_steps=10, seed=3).step(f, x0[4 * r : 4 * r + 4], 4, r, 2) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([o.terms.t for o in ranks]), single.terms.t, rtol=0, atol=0)
    torch.testing.assert_close((ranks[0].terms.loss + ranks[1].terms.loss) / 2, single.terms.loss)


def test_the_registry_entry_builds_samples_and_refuses_other_nfe():
    kind = get_kind("scm")
    assert kind.name == "scm" and kind.default_nfe == (1, 2)
    f = kind.student(unet_tiny(), PAPER)
    assert isinstance(f, TrigFlowFunction)
    times = kind.nfe_times(NoiseLevels(sigma_mid=SD * math.tan(1.1)), 2, None)
    assert kind.sample(f, torch.randn(2, 4, 8, 8), times, PAPER, None).shape == (2, 4, 8, 8)
    with pytest.raises(LctError, match="1 or 2 NFE"):
        kind.nfe_times(PAPER, 35, None)


def test_jvp_under_bf16_autocast_runs_in_the_primals_precision():
    from lct.core.jvp import jvp

    conv = torch.nn.Conv2d(2, 2, 3, padding=1)
    x, t = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # without the guard the duals meet bf16 weights and fail
        y, dy = jvp(conv, (x,), (t,))
    assert y.dtype == dy.dtype == torch.float32
    torch.testing.assert_close(dy, torch.nn.functional.conv2d(t, conv.weight, padding=1))
