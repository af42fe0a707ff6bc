"""EDM baseline math: preconditioning and loss against Karras et al. 2022's closed forms, Heun on a Gaussian
whose exact denoiser is known, and the diffusion -> consistency weight mapping."""

import math

import pytest
import torch
from torch import nn

from lct.core import PAPER, ConsistencyFunction, karras_sigmas
from lct.core.edm import (
    EDM_P_MEAN,
    EDM_P_STD,
    Denoiser,
    consistency_state_from_edm,
    edm_loss,
    edm_scalings,
    edm_weight,
    heun_nfe,
    heun_sample,
    heun_sigmas,
    heun_steps_for_nfe,
    lognormal_sigmas,
    preconditioning_gap,
)
from lct.core.precond import c_noise
from lct.errors import LctError

SD = PAPER.sigma_data  # 0.5
GRID = (PAPER.sigma_min, PAPER.sigma_max, PAPER.rho)
SIGMAS = torch.tensor([0.002, 0.05, 0.3, 0.5, 1.0, 7.0, 80.0], dtype=torch.float64)


class Affine(nn.Module):
    """A stand-in backbone with parameters, a buffer and an output depending on both inputs."""

    def __init__(self, c=2):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.t = nn.Linear(1, c)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x, c_noise):
        return self.scale * self.conv(x) + self.t(c_noise[:, None].to(x) / 1000)[:, :, None, None]


class Recorder(nn.Module):
    """Returns zeros and remembers what it was fed."""

    def forward(self, x, c_noise):
        self.seen = (x.clone(), c_noise.clone())
        return torch.zeros_like(x)


# ----------------------------------------------------------------------------
# Preconditioning.


def test_scalings_closed_forms():
    c_skip, c_out, c_in = edm_scalings(SIGMAS, SD)
    for k, s in enumerate(SIGMAS.tolist()):
        assert c_skip[k].item() == pytest.approx(SD**2 / (s**2 + SD**2), rel=1e-14)
        assert c_out[k].item() == pytest.approx(s * SD / math.sqrt(s**2 + SD**2), rel=1e-14)
        assert c_in[k].item() == pytest.approx(1 / math.sqrt(s**2 + SD**2), rel=1e-14)
    # c_skip^2 sigma^2 + ... : the skip and output paths split the target's variance (Karras et al. 2022, B.6):
    # c_out^2 = c_skip sigma^2 and c_skip + (c_out / sigma_d)^2 = 1.
    torch.testing.assert_close(c_out**2, c_skip * SIGMAS**2, rtol=1e-13, atol=0)
    torch.testing.assert_close(c_skip + (c_out / SD) ** 2, torch.ones_like(SIGMAS), rtol=1e-14, atol=0)


def test_input_is_variance_preserving_and_target_has_unit_variance():
    """Var(c_in (x + sigma n)) = 1 and Var(F_target) = 1 for x of std sigma_d: closed form and Monte Carlo."""
    c_skip, c_out, c_in = edm_scalings(SIGMAS, SD)
    torch.testing.assert_close(c_in**2 * (SD**2 + SIGMAS**2), torch.ones_like(SIGMAS), rtol=1e-14, atol=0)
    # F_target = (x - c_skip (x + sigma n)) / c_out, the backbone output that makes D exact.
    var_target = ((1 - c_skip) ** 2 * SD**2 + c_skip**2 * SIGMAS**2) / c_out**2
    torch.testing.assert_close(var_target, torch.ones_like(SIGMAS), rtol=1e-12, atol=0)
    g = torch.Generator().manual_seed(0)
    n_mc = 200_000
    x = SD * torch.randn(n_mc, 1, generator=g, dtype=torch.float64)
    n = torch.randn(n_mc, 1, generator=g, dtype=torch.float64)
    target = (x - c_skip * (x + SIGMAS * n)) / c_out  # (n_mc, 7)
    # The sample variance of n_mc draws has relative standard error sqrt(2 / n_mc) = 0.0032; allow 4 of them.
    torch.testing.assert_close(target.var(0), torch.ones_like(SIGMAS), rtol=0, atol=4 * math.sqrt(2 / n_mc))
    torch.testing.assert_close(
        (c_in * (x + SIGMAS * n)).var(0), torch.ones_like(SIGMAS), rtol=0, atol=4 * math.sqrt(2 / n_mc)
    )


def test_denoiser_is_identity_as_sigma_goes_to_zero():
    torch.manual_seed(0)
    D = Denoiser(Affine(), SD).double()
    nn.init.normal_(D.backbone.conv.weight)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    for s in (1e-4, 1e-6, 1e-8):
        # |D - x| = |(c_skip - 1) x + c_out F| <= (s / sigma_d)^2 |x| + 2 s |F|
        assert (D(x, s) - x).abs().max().item() < 50 * s
    assert (D(x, 1.0) - x).abs().max().item() > 0.1
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            D(x, bad)


def test_denoiser_feeds_backbone_exactly_like_the_consistency_function():
    """Same c_in x and same c_noise (= precond.c_noise, 250 ln sigma): what makes weights transferable."""
    x = torch.randn(len(SIGMAS), 2, 4, 4, dtype=torch.float64)
    d_rec, f_rec = Recorder(), Recorder()
    Denoiser(d_rec, SD)(x, SIGMAS)
    ConsistencyFunction(f_rec, PAPER)(x, SIGMAS)
    torch.testing.assert_close(d_rec.seen[0], f_rec.seen[0], rtol=0, atol=0)
    torch.testing.assert_close(d_rec.seen[1], f_rec.seen[1], rtol=0, atol=0)
    torch.testing.assert_close(d_rec.seen[1], c_noise(SIGMAS), rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------
# Training loss.


def test_weight_is_inverse_c_out_squared():
    _, c_out, _ = edm_scalings(SIGMAS, SD)
    torch.testing.assert_close(edm_weight(SIGMAS, SD), (SIGMAS**2 + SD**2) / (SIGMAS * SD) ** 2, rtol=1e-15, atol=0)
    torch.testing.assert_close(edm_weight(SIGMAS, SD) * c_out**2, torch.ones_like(SIGMAS), rtol=1e-14, atol=0)
    torch.testing.assert_close(edm_weight(SIGMAS, SD), 1 / SIGMAS**2 + 1 / SD**2, rtol=1e-14, atol=0)


class Oracle(nn.Module):
    """Outputs F_target = (x0 - c_skip x) / c_out for a fixed x0, recovering sigma from c_noise = 250 ln sigma."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x_in, c_noise):
        sigma = torch.exp(c_noise / 250).view(-1, 1, 1, 1)
        c_skip, c_out, c_in = edm_scalings(sigma, SD)
        return (self.x0 - c_skip * x_in / c_in) / c_out


def test_loss_zero_for_exact_target_and_closed_form_otherwise():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(len(SIGMAS), 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    loss = edm_loss(Denoiser(Oracle(x0), SD), x0, noise, SIGMAS, SD)
    assert loss.shape == (len(SIGMAS),)
    assert loss.abs().max().item() < 1e-20
    # A zero backbone leaves D = c_skip x, so the loss is lambda mean_D ((c_skip - 1) x0 + c_skip sigma n)^2.
    loss = edm_loss(Denoiser(Recorder(), SD), x0, noise, SIGMAS, SD)
    c_skip = edm_scalings(SIGMAS, SD)[0].view(-1, 1, 1, 1)
    residual = (c_skip - 1) * x0 + c_skip * SIGMAS.view(-1, 1, 1, 1) * noise
    expect = edm_weight(SIGMAS, SD) * residual.flatten(1).square().mean(1)
    torch.testing.assert_close(loss, expect, rtol=1e-12, atol=0)


def test_loss_of_zero_backbone_on_sigma_d_data_is_one():
    """With F = 0 the weighted loss is Var(F_target) = 1 at every sigma (the unit-variance training target)."""
    g = torch.Generator().manual_seed(2)
    n_mc = 50_000
    x0 = SD * torch.randn(n_mc, 1, 1, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for s in (0.01, 0.5, 20.0):
        loss = edm_loss(Denoiser(Recorder(), SD), x0, noise, torch.full((n_mc,), s, dtype=torch.float64), SD)
        assert loss.mean().item() == pytest.approx(1.0, abs=4 * math.sqrt(2 / n_mc))


def test_lognormal_sigmas_moments_and_generator():
    g = torch.Generator().manual_seed(3)
    n_mc = 100_000
    log_s = lognormal_sigmas(n_mc, generator=g, dtype=torch.float64).log()
    assert log_s.mean().item() == pytest.approx(EDM_P_MEAN, abs=4 * EDM_P_STD / math.sqrt(n_mc))
    assert log_s.std().item() == pytest.approx(EDM_P_STD, abs=4 * EDM_P_STD / math.sqrt(2 * n_mc))
    a = lognormal_sigmas(8, generator=torch.Generator().manual_seed(4))
    b = lognormal_sigmas(8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.dtype == torch.float32 and bool((a > 0).all())


# ----------------------------------------------------------------------------
# Heun sampler on a Gaussian: data N(mu, s^2) per channel has the exact denoiser D(x, t) = mu + s^2/(s^2+t^2) (x - mu),
# and the probability-flow ODE dx/dt = (x - D)/t keeps (x - mu)/sqrt(s^2 + t^2) constant.

MU = torch.tensor([1.0, -0.5], dtype=torch.float64).view(1, 2, 1, 1)
S = torch.tensor([0.5, 0.2], dtype=torch.float64).view(1, 2, 1, 1)
T_MAX = 80.0


def gaussian_denoiser(x, t):
    return MU + S**2 / (S**2 + t**2) * (x - MU)


def exact_flow(noise):
    """The ODE solution at t = 0 from x(T_MAX) = T_MAX n: the map heun_sample approximates."""
    return MU + S * (T_MAX * noise - MU) / (S**2 + T_MAX**2).sqrt()


def euler_sample(denoiser, noise, steps):
    t = heun_sigmas(steps, *GRID).tolist()
    x = t[0] * noise
    for t_cur, t_next in zip(t[:-1], t[1:]):
        x = x + (t_next - t_cur) * (x - denoiser(x, t_cur)) / t_cur
    return x


def test_heun_reproduces_gaussian_moments():
    g = torch.Generator().manual_seed(5)
    n_mc, steps = 20_000, 40
    noise = torch.randn(n_mc, 2, 1, 1, generator=g, dtype=torch.float64)
    x = heun_sample(gaussian_denoiser, noise, steps, *GRID)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True)
    # Tolerance = 4 Monte Carlo standard errors (s/sqrt(n) for the mean, s/sqrt(2n) for the std)
    # + the prior's bias (x_T = T n ignores the data mean: the exact flow's mean is mu (1 - s/sqrt(s^2+T^2)))
    # + the discretisation error at 40 steps, which test_heun_error_is_second_order bounds by 2% of s.
    prior_bias = MU.abs() * S / (S**2 + T_MAX**2).sqrt()
    assert bool(((mean - MU).abs() <= 4 * S / math.sqrt(n_mc) + prior_bias + 0.02 * S).all()), (mean, MU)
    assert bool(((std - S).abs() <= 4 * S / math.sqrt(2 * n_mc) + 0.02 * S).all()), (std, S)


def _flow_errors(sampler, steps):
    """Max error, in units of the data std s, of the sampler's map n -> a n + b against the exact flow.

    The toy is linear in n, so the sampler is affine and its outputs at n = 0 and n = 1 give a and b
    exactly: the output has mean b and std |a| for n ~ N(0, 1), with no Monte Carlo error.
    """
    basis = torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1, 1).expand(2, 2, 1, 1)
    return ((sampler(gaussian_denoiser, basis, steps) - exact_flow(basis)).abs() / S).max().item()


def test_heun_error_is_second_order_and_beats_euler():
    heun = {n: _flow_errors(lambda d, x, steps: heun_sample(d, x, steps, *GRID), n) for n in (10, 20, 40, 80)}
    euler = {n: _flow_errors(euler_sample, heun_nfe(n)) for n in (10, 20, 40, 80)}  # Euler at Heun's NFE
    for n in (20, 40):
        assert heun[n] / heun[2 * n] > 3.5  # ~4 for a second-order method
        assert euler[n] / euler[2 * n] < 2.5  # ~2 for a first-order method
    assert heun[40] < 0.02  # the bound test_heun_reproduces_gaussian_moments relies on
    assert heun[40] < euler[40] and heun[80] < euler[80] / 5


def test_heun_sigmas_and_nfe_accounting():
    t = heun_sigmas(18, *GRID)
    assert len(t) == 19 and t[0].item() == 80.0 and t[-1].item() == 0.0
    torch.testing.assert_close(t[:-1], karras_sigmas(18), rtol=0, atol=0)
    torch.testing.assert_close(heun_sigmas(1, *GRID), torch.tensor([80.0, 0.0], dtype=torch.float64))
    assert heun_nfe(18) == 35 and heun_steps_for_nfe(35) == 18 and heun_steps_for_nfe(1) == 1
    for steps in (1, 2, 5):
        calls = []

        def counting(x, t, calls=calls):
            calls.append(t)
            return gaussian_denoiser(x, t)

        heun_sample(counting, torch.zeros(1, 2, 1, 1, dtype=torch.float64), steps, *GRID)
        assert len(calls) == heun_nfe(steps) and heun_steps_for_nfe(len(calls)) == steps
        assert 0.0 not in calls  # the last step is Euler: D is never evaluated at t = 0
    x1 = heun_sample(gaussian_denoiser, torch.ones(1, 2, 1, 1, dtype=torch.float64), 1, *GRID)
    torch.testing.assert_close(x1, gaussian_denoiser(T_MAX * torch.ones(1, 2, 1, 1, dtype=torch.float64), T_MAX))


@pytest.mark.parametrize("nfe", [0, 2, 4, -3, 3.0, "5"])
def test_heun_steps_for_nfe_rejects_even_or_odd_types(nfe):
    with pytest.raises(LctError, match="odd number"):
        heun_steps_for_nfe(nfe)


def test_heun_with_denoiser_module_matches_closed_form():
    """Denoiser(Oracle-of-the-Gaussian) is the closed-form denoiser, so the nn path samples the same."""

    class GaussianF(nn.Module):
        def forward(self, x_in, c_noise):
            t = torch.exp(c_noise / 250).view(-1, 1, 1, 1)
            c_skip, c_out, c_in = edm_scalings(t, SD)
            x = x_in / c_in
            return (gaussian_denoiser(x, t) - c_skip * x) / c_out

    noise = torch.randn(16, 2, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(
        heun_sample(Denoiser(GaussianF(), SD), noise, 18, *GRID),
        heun_sample(gaussian_denoiser, noise, 18, *GRID),
        rtol=1e-10,
        atol=1e-12,
    )


# ----------------------------------------------------------------------------
# Diffusion -> consistency initialisation.


def test_consistency_state_from_edm_round_trip():
    torch.manual_seed(7)
    edm = Denoiser(Affine(), SD)
    ckpt = {f"emas.0_9999.{k}": v for k, v in edm.state_dict().items()}
    ckpt |= {f"student.{k}": torch.zeros_like(v) for k, v in edm.state_dict().items()}
    ct = ConsistencyFunction(Affine(), PAPER)
    state = consistency_state_from_edm(ckpt, "emas.0_9999.")
    assert (
        set(state)
        == set(ct.state_dict())
        == {"backbone.conv.weight", "backbone.conv.bias", "backbone.t.weight", "backbone.t.bias", "backbone.scale"}
    )
    ct.load_state_dict(state, strict=True)
    for k, v in edm.state_dict().items():
        assert torch.equal(ct.state_dict()[k], v), k
    # The two functions now differ only by the preconditioning gap: |f - D| <= |dc_skip| |x| + |dc_out| |F|.
    x = torch.randn(len(SIGMAS), 2, 4, 4)
    s = SIGMAS.float()
    gap = (ct(x, s) - edm(x, s)).abs().max().item()
    bound = preconditioning_gap(SIGMAS, PAPER)
    F = edm.backbone(edm_scalings(s, SD)[2].view(-1, 1, 1, 1) * x, c_noise(s).float())
    assert 0 < gap <= bound.c_skip * x.abs().max().item() + bound.c_out * F.abs().max().item() + 1e-6


def test_consistency_state_from_edm_errors():
    state = {f"student.{k}": v for k, v in Denoiser(Affine(), SD).state_dict().items()}
    with pytest.raises(LctError, match=r"no EDM denoiser weights under prefix 'emas.0_9\.'.*'student\.'"):
        consistency_state_from_edm(state, "emas.0_9.")
    with pytest.raises(LctError, match="outside 'backbone.'"):
        consistency_state_from_edm(state, "")
    assert set(consistency_state_from_edm(state, "student.")) == set(ConsistencyFunction(Affine(), PAPER).state_dict())


def test_preconditioning_gap_closed_forms():
    """|dc_out| = sigma_d sigma_min / sqrt(sigma^2 + sigma_d^2), largest at sigma_min;
    |dc_skip| ~ 2 sigma_min sigma_d^2 sigma / (sigma^2 + sigma_d^2)^2 peaks near sigma_d / sqrt(3)."""
    fine = torch.logspace(math.log10(0.002), math.log10(80.0), 20_001, dtype=torch.float64)
    gap = preconditioning_gap(fine, PAPER)
    assert gap.sigma_c_out == pytest.approx(0.002)
    assert gap.c_out == pytest.approx(SD * 0.002 / math.sqrt(0.002**2 + SD**2), rel=1e-12)
    assert gap.sigma_c_skip == pytest.approx(SD / math.sqrt(3), rel=0.01)
    assert gap.c_skip == pytest.approx(2 * 0.002 * SD**2 * (SD / math.sqrt(3)) / (SD**2 * 4 / 3) ** 2, rel=0.01)
    assert gap.c_skip < 0.003 and gap.c_out < 0.0021
    # At sigma_max the two agree to within sigma_min-relative terms.
    far = preconditioning_gap([80.0], PAPER)
    assert far.c_skip < 1e-7 and far.c_out < 2e-5
    with pytest.raises(ValueError, match="sigma"):
        preconditioning_gap([0.001], PAPER)
