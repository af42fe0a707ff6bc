"""Discretization curriculum, noise-level sampling and weighting (iCT, Song & Dhariwal 2023 §3.3-3.5).

The Karras grid itself lives with the noise levels (noise_levels.karras_sigmas).

Every schedule is a pure function of its arguments (the global step, never mutable state) so a resumed
run lands on exactly the same N, sigma grid and c.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_finite

P_MEAN, P_STD = -1.1, 2.0


# ----------------------------------------------------------------------------
# iCT eq. 8: exponential doubling curriculum N(k) = min(s0 * 2^floor(k/K'), s1) + 1.


def num_scales(step: int, total_steps: int, s0: int = 10, s1: int = 640) -> int:
    """Number of grid points N at global step `step` of `total_steps`."""
    step, total_steps = int(step), int(total_steps)
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got step={step}, total_steps={total_steps}")
    if not 1 <= s0 <= s1:
        raise ValueError(f"need 1 <= s0 <= s1, got s0={s0}, s1={s1}")
    # K' = floor(K / (log2 floor(s1/s0) + 1)): the log itself is not floored (iCT eq. 8).
    k_prime = max(math.floor(total_steps / (math.log2(s1 // s0) + 1)), 1)
    return int(min(s0 * 2 ** (step // k_prime), s1)) + 1


# ----------------------------------------------------------------------------
# iCT eq. 10: discretized lognormal p(i) over the N-1 intervals [sigma_{i+1}, sigma_i].


# ----------------------------------------------------------------------------
# Learning-rate cooldown (beyond the paper, whose lr is constant): constant, then linear to 0 over the last
# fraction `cooldown` of the run; a short run's last iterates then average out the gradient noise.


def lr_factor(step: int, total_steps: int, cooldown: float = 0.0) -> float:
    """The lr multiplier at `step` of `total_steps`: min(1, (K - k) / (cooldown * K)); 1 throughout for 0."""
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got step={step}, total_steps={total_steps}")
    if not 0.0 <= cooldown <= 1.0:
        raise ValueError(f"the lr cooldown is a fraction of the run in [0, 1], got {cooldown}")
    return 1.0 if cooldown == 0 else max(0.0, min(1.0, (total_steps - step) / (cooldown * total_steps)))


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


# ----------------------------------------------------------------------------
# iCT weighting lambda(sigma_i, sigma_{i+1}) = 1 / (sigma_i - sigma_{i+1}).


def ict_weight(sigma_i: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weight lambda = 1/(sigma_i - sigma_{i+1}); requires sigma_i > sigma_{i+1}.

    Checked for CPU tensors; device tensors come from a grid the objective validated on the host (a check here
    would cost a host sync per step)."""
    gap = sigma_i - sigma_next
    if gap.device.type == "cpu" and bool((gap <= 0).any()):
        raise ValueError("ict_weight needs sigma_i > sigma_next for every pair")
    return 1.0 / gap


# ----------------------------------------------------------------------------
# Index samplers (the `method.noise` part): p(i) over the N-1 grid intervals.


class LogNormalIndices:
    """iCT's discretized lognormal p(i) (eq. 10)."""

    def __init__(self, p_mean: float = P_MEAN, p_std: float = P_STD):
        self.p_mean, self.p_std = float(p_mean), float(p_std)

    def probs(self, sigmas: torch.Tensor) -> torch.Tensor:
        return lognormal_index_probs(sigmas, self.p_mean, self.p_std)


class UniformIndices:
    """Uniform p(i) (the original CM sampler)."""

    def probs(self, sigmas: torch.Tensor) -> torch.Tensor:
        return uniform_index_probs(sigmas)


class Curriculum:
    """iCT's doubling curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1 (the `method.curriculum` part)."""

    def __init__(self, s0: int = 10, s1: int = 640):
        if not 1 <= int(s0) <= int(s1):
            from lct.errors import LctError

            raise LctError(f"method.curriculum needs 1 <= s0 <= s1, got s0={s0}, s1={s1}")
        self.s0, self.s1 = int(s0), int(s1)

    def __call__(self, step: int, total_steps: int) -> int:
        return num_scales(step, total_steps, self.s0, self.s1)
