"""The latent diffusion baseline (EDM, Karras et al. 2022) and the diffusion -> consistency weight mapping.

EDM denoiser (Karras et al. 2022, Table 1, "Ours"):
    D_theta(x, sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x, c_noise(sigma)),
    c_skip = sigma_d^2 / (sigma^2 + sigma_d^2), c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
    c_in = 1 / sqrt(sigma^2 + sigma_d^2); there is no sigma_min offset, so D(x, sigma) -> x as sigma -> 0.
c_noise is the consistency function's 250 ln(sigma) (lct.core.precond), not EDM's ln(sigma)/4: one backbone
sees the same inputs under both parametrizations, so its weights move between them (Easy Consistency
Tuning, Geng et al. 2025, initialises consistency training from a diffusion model this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lct.errors import LctError

from ._checks import check_finite, check_finite_on_host, check_same_shape
from .noise_levels import NoiseLevels, karras_sigmas
from .precond import boundary_scalings, c_noise

# Karras et al. 2022, Table 1: training noise distribution ln(sigma) ~ N(P_mean, P_std^2).
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2


# ----------------------------------------------------------------------------
# Preconditioning and the denoiser.


def edm_scalings(sigma: torch.Tensor, sigma_data: float):
    """(c_skip, c_out, c_in) of EDM's denoiser at noise level sigma (no range checks: hot path)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64 if not torch.is_tensor(sigma) else None)
    root = (sigma**2 + sigma_data**2).sqrt()
    return sigma_data**2 / root**2, sigma * sigma_data / root, 1.0 / root


class Denoiser(nn.Module):
    """D_theta = EDM preconditioning around a backbone F_theta(x_in (B,C,H,W), c_noise (B,)) -> (B,C,H,W).

    The backbone sits under the same attribute name as in ConsistencyFunction, so the two state dicts
    have the same keys.
    """

    def __init__(self, backbone: nn.Module, sigma_data: float):
        super().__init__()
        self.backbone = backbone
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        # As in ConsistencyFunction: check python / CPU sigma for free, trust device tensors (no host sync).
        if not torch.is_tensor(sigma) or sigma.device.type == "cpu":
            s = torch.as_tensor(sigma, dtype=torch.float64)
            check_finite("sigma", s)
            if bool((s <= 0).any()):
                raise ValueError(f"the EDM denoiser needs sigma > 0, got min {float(s.min()):.6g}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma  # (B,)
        c_skip, c_out, c_in = (c.view(-1, 1, 1, 1) for c in edm_scalings(sigma, self.sigma_data))
        F = self.backbone(c_in * x, c_noise(sigma, check=False))  # (B,C,H,W)
        return c_skip * x + c_out * F


# ----------------------------------------------------------------------------
# Training (Karras et al. 2022, §5 and Table 1): lognormal sigma,
# weight lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2.


def lognormal_sigmas(
    batch_size: int,
    p_mean: float = EDM_P_MEAN,
    p_std: float = EDM_P_STD,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B,) noise levels sigma = exp(P_mean + P_std z), z ~ N(0, 1), drawn on the generator's device."""
    z = torch.randn(
        batch_size, generator=generator, dtype=dtype, device=generator.device if generator is not None else device
    )
    return (p_mean + p_std * z).exp().to(device)


def edm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 = 1/c_out^2 (= 1/sigma^2 + 1/sigma_d^2)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoiser, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Per-sample lambda(sigma) mean_D (D(x0 + sigma n, sigma) - x0)^2, shape (B,).

    Averaged over D like lct's diffusion loss; because lambda c_out^2 = 1 this is the backbone's plain
    MSE against a target of unit variance (Karras et al. 2022, Appendix B.6).
    """
    check_same_shape("x0", x0, "noise", noise)
    check_finite_on_host("x0", x0)
    check_finite_on_host("noise", noise)
    sigma = sigma.to(x0)
    denoised = denoiser(x0 + sigma.view(-1, *([1] * (x0.ndim - 1))) * noise, sigma)
    return edm_weight(sigma, sigma_data) * (denoised - x0).flatten(1).square().mean(1)


# ----------------------------------------------------------------------------
# Deterministic sampler (Karras et al. 2022, Algorithm 1 without churn).


def heun_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """t_0..t_N (float64): the N-point Karras grid from sigma_max to sigma_min, then t_N = 0.

    One step is [sigma_max, 0]: a single denoiser evaluation, D(sigma_max n, sigma_max).
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps == 1:
        grid = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        grid = karras_sigmas(steps, sigma_min, sigma_max, rho)
    return torch.cat([grid, grid.new_zeros(1)])


def heun_nfe(steps: int) -> int:
    """Denoiser evaluations of heun_sample: one Euler evaluation per step, a correction on all but the last."""
    return 2 * int(steps) - 1


def heun_steps_for_nfe(nfe: int) -> int:
    """Steps N with 2N - 1 = nfe; LctError unless nfe is an odd integer >= 1."""
    if not isinstance(nfe, int) or nfe < 1 or nfe % 2 == 0:
        raise LctError(
            f"--nfe for a diffusion checkpoint must be an odd number >= 1 (Heun's sampler uses "
            f"NFE = 2*steps - 1), got {nfe!r}; e.g. --nfe 35 runs 18 steps"
        )
    return (nfe + 1) // 2


@torch.no_grad()
def heun_sample(
    denoiser,
    noise: torch.Tensor,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    rho: float,
) -> torch.Tensor:
    """x_N from x_0 = t_0 n along dx/dt = (x - D(x, t)) / t on heun_sigmas(steps)."""
    return heun_solve(denoiser, noise, heun_sigmas(steps, sigma_min, sigma_max, rho))


@torch.no_grad()
def heun_solve(denoiser, noise: torch.Tensor, t) -> torch.Tensor:
    """x_N from x_0 = t_0 n along dx/dt = (x - D(x, t)) / t over t_0 > ... > t_N = 0 (2N - 1 evaluations).

    Each step is Euler followed by the trapezoidal (Heun) correction, except the last one, into t_N = 0.
    """
    t = [float(s) for s in t]
    if len(t) < 2 or t[-1] != 0.0 or any(a <= b for a, b in zip(t, t[1:])):
        raise ValueError(f"Heun's time grid must descend strictly to a final 0, got {t}")
    check_finite("noise", noise)
    x = t[0] * noise
    for t_cur, t_next in zip(t[:-1], t[1:]):
        d = (x - denoiser(x, t_cur)) / t_cur
        x_next = x + (t_next - t_cur) * d
        if t_next > 0:
            d_next = (x_next - denoiser(x_next, t_next)) / t_next
            x_next = x + (t_next - t_cur) * 0.5 * (d + d_next)
        x = x_next
    return x


# ----------------------------------------------------------------------------
# Diffusion -> consistency initialisation (Geng et al. 2025). Both parametrizations feed the backbone
# c_in(sigma) x = x / sqrt(sigma^2 + sigma_d^2) and c_noise = 250 ln(sigma), so the backbone's weights
# carry over unchanged; only c_skip and c_out differ, by the sigma_min offset of the boundary condition.


def consistency_state_from_edm(state_dict: dict, prefix: str = "") -> dict:
    """The ConsistencyFunction state dict ("backbone.*") holding the backbone of the Denoiser saved under `prefix`.

    E.g. prefix "emas.0_9999." picks one EMA of a training checkpoint's state dict; the tensors are shared,
    not copied (load_state_dict copies them into the consistency function).
    """
    picked = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not picked:
        roots = sorted({k.split(".")[0] + "." for k in state_dict})
        raise LctError(
            f"no EDM denoiser weights under prefix {prefix!r} (top-level prefixes: {roots}); "
            f"pass the prefix the denoiser was saved under"
        )
    stray = sorted(k for k in picked if not k.startswith("backbone."))
    if stray:
        raise LctError(
            f"weights under {prefix!r} are not an EDM denoiser's (keys outside 'backbone.': "
            f"{stray[:3]}); pass the prefix of the denoiser itself"
        )
    return picked


@dataclass(frozen=True)
class PreconditioningGap:
    """Largest |c_ct - c_edm| over a set of sigmas, and where it occurs."""

    c_skip: float
    sigma_c_skip: float
    c_out: float
    sigma_c_out: float


def preconditioning_gap(sigmas, noise: NoiseLevels) -> PreconditioningGap:
    """max |c_skip^CT - c_skip^EDM| and max |c_out^CT - c_out^EDM| over `sigmas` (c_in and c_noise agree).

    |Delta c_out| = sigma_d sigma_min / sqrt(sigma^2 + sigma_d^2) is largest at sigma_min (~ sigma_min);
    |Delta c_skip| ~ 2 sigma_min sigma_d^2 sigma / (sigma^2 + sigma_d^2)^2 is largest near sigma_d / sqrt(3).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    ct_skip, ct_out, _ = boundary_scalings(s, noise)
    edm_skip, edm_out, _ = edm_scalings(s, noise.sigma_data)
    d_skip, d_out = (ct_skip - edm_skip).abs(), (ct_out - edm_out).abs()
    i, j = int(d_skip.argmax()), int(d_out.argmax())
    return PreconditioningGap(float(d_skip[i]), float(s[i]), float(d_out[j]), float(s[j]))
