"""Noise grid, discretization curriculum and noise-level sampling (iCT, Song & Dhariwal 2023 §3.3-3.5).

Every schedule is a pure function of its arguments (the global step, never mutable state) so a resumed
run lands on exactly the same N, sigma grid and c.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_finite

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
P_MEAN, P_STD = -1.1, 2.0


#----------------------------------------------------------------------------
# Karras et al. 2022 eq. 5: sigma_i, i = 0..N-1, descending (sigma_0 = sigma_max).

def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The N-point Karras grid from sigma_max down to sigma_min."""
    n = int(n)
    if n < 2:
        raise ValueError(f"n (number of grid points) must be >= 2, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.arange(n, dtype=torch.float64) / (n - 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).to(dtype)


#----------------------------------------------------------------------------
# iCT eq. 8: exponential doubling curriculum N(k) = min(s0 * 2^floor(k/K'), s1) + 1.

def num_scales(step: int, total_steps: int, s0: int = 10, s1: int = 640) -> int:
    """Number of grid points N at global step `step` of `total_steps`."""
    step, total_steps = int(step), int(total_steps)
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got step={step}, total_steps={total_steps}")
    if not 1 <= s0 <= s1:
        raise ValueError(f"need 1 <= s0 <= s1, got s0={s0}, s1={s1}")
    k_prime = max(total_steps // (int(math.log2(s1 // s0)) + 1), 1)  # K' = floor(K / (log2 floor(s1/s0) + 1))
    return int(min(s0 * 2 ** (step // k_prime), s1)) + 1


#----------------------------------------------------------------------------
# iCT eq. 10: discretized lognormal p(i) over the N-1 intervals [sigma_{i+1}, sigma_i].

def lognormal_index_probs(sigmas: torch.Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """Probabilities p(i), i = 0..N-2, of drawing the pair (sigma_i, sigma_{i+1})."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    check_finite("sigmas", sigmas)
    if sigmas.ndim != 1 or sigmas.numel() < 2 or bool((sigmas[1:] >= sigmas[:-1]).any()) or bool((sigmas <= 0).any()):
        raise ValueError("sigmas must be a 1-D, strictly descending, positive grid with >= 2 points")
    e = torch.erf((torch.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    p = e[:-1] - e[1:]
    return p / p.sum()


def uniform_index_probs(sigmas: torch.Tensor) -> torch.Tensor:
    """Uniform p(i) over the N-1 intervals (the original CM sampler, an ablation option)."""
    n = torch.as_tensor(sigmas).numel()
    return torch.full((n - 1,), 1.0 / (n - 1), dtype=torch.float64)


def sample_indices(probs: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw `batch_size` interval indices i ~ p (on CPU, int64)."""
    return torch.multinomial(probs.float(), batch_size, replacement=True, generator=generator)


#----------------------------------------------------------------------------
# iCT weighting lambda(sigma_i, sigma_{i+1}) = 1 / (sigma_i - sigma_{i+1}).

def ict_weight(sigma_i: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weight lambda = 1/(sigma_i - sigma_{i+1}); requires sigma_i > sigma_{i+1}."""
    gap = sigma_i - sigma_next
    if bool((gap <= 0).any()):
        raise ValueError("ict_weight needs sigma_i > sigma_next for every pair")
    return 1.0 / gap
