"""Consistency-training losses: the TD pair, the CT term, the low-noise diffusion term, their sum.

Paper §4 (sLCT): L = mean_B[ lambda(sigma_i, sigma_{i+1}) rho_c(f_theta(x_i) - f_theta^-(x_{i+1})) ]
                   + w * mean_{i >= floor((1-r)N)} [ (1/sigma_i^2 + 1/sigma_d^2) mean_D (f_theta(x_i) - x0)^2 ].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_finite_on_host, check_same_shape
from .schedules import ict_weight


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like).view(-1, *([1] * (like.ndim - 1)))


# ----------------------------------------------------------------------------
# The pair: x_i = x0 + sigma_i n and x_{i+1} = x0 + sigma_{i+1} n with the SAME n (iCT §3.1).


def td_pair(f, f_target, x0: torch.Tensor, noise: torch.Tensor, sigma_i: torch.Tensor, sigma_next: torch.Tensor):
    """(student, target): student with grad, target without, both passes under identical dropout masks.

    The student pass runs inside a fork of the CPU *and* CUDA generators, so the target pass replays
    the same random draws.
    """
    devices = [x0.device.index or 0] if x0.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        student = f(x0 + _bcast(sigma_i, x0) * noise, sigma_i)
    with torch.no_grad():
        target = f_target(x0 + _bcast(sigma_next, x0) * noise, sigma_next)
    return student, target.detach()


def consistency_loss(student: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, metric, c) -> torch.Tensor:
    """Per-sample lambda * rho_c(student - target), shape (B,); the target never receives gradient."""
    check_same_shape("student", student, "target", target)
    check_finite_on_host("student", student)
    check_finite_on_host("target", target)
    return weight.to(student) * metric(student - target.detach(), c)


# ----------------------------------------------------------------------------
# Diffusion loss on the low-noise tail (paper §4.3): reuse the student output, EDM weight 1/sigma^2 + 1/sigma_d^2.


def diffusion_mask(indices: torch.Tensor, n_scales: int, ratio: float) -> torch.Tensor:
    """Samples whose grid index i >= floor((1 - r) N): the fraction r of the grid nearest the data."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"diffusion ratio r must be in [0, 1], got {ratio}")
    return indices >= int((1.0 - ratio) * n_scales)


def diffusion_loss(
    student: torch.Tensor,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    mask: torch.Tensor,
    sigma_data: float,
    denominator: float | None = None,
) -> torch.Tensor:
    """Mean over the selected samples of (1/sigma^2 + 1/sigma_d^2) mean_D (student - x0)^2; 0 if none.

    `denominator` replaces the local count of selected samples (data-parallel training passes the global
    count / world size, so that the gradient average over ranks is the mean over the global selection).
    """
    check_same_shape("student", student, "x0", x0)
    mask = mask.to(student.device)
    per_sample = (student - x0).flatten(1).square().mean(1) * (sigma.to(student) ** -2 + sigma_data**-2)
    if denominator is not None:  # known on the host: no device copy of it, no read of the device's count
        n = torch.tensor(float(denominator))
        return (per_sample * mask).sum() / n.clamp(min=1e-12) if denominator > 0 else per_sample.new_zeros(())
    n = mask.sum()
    return torch.where(n > 0, (per_sample * mask).sum() / n.clamp(min=1e-12), per_sample.new_zeros(()))


class LowNoiseDiffusion:
    """The `method.diffusion` part: weight w and tail fraction r of the diffusion term (w = 0: off)."""

    def __init__(self, weight: float = 5.0, ratio: float = 0.25):
        from lct.errors import LctError

        if weight < 0:
            raise LctError(f"method.diffusion.weight must be >= 0 (0 switches the term off), got {weight}")
        if not 0.0 <= ratio <= 1.0:
            raise LctError(f"method.diffusion.ratio must be in [0, 1], got {ratio}")
        self.weight, self.ratio = float(weight), float(ratio)

    def mask(self, indices: torch.Tensor, n_scales: int) -> torch.Tensor:
        return diffusion_mask(indices, n_scales, self.ratio)


# ----------------------------------------------------------------------------


@dataclass
class LossTerms:
    """The composite loss and what the loop logs about it (all detached except `loss`)."""

    loss: torch.Tensor  # scalar: L_CT + w L_diff
    consistency: torch.Tensor  # scalar L_CT
    diffusion: torch.Tensor  # scalar L_diff (0 when off or empty)
    weight: torch.Tensor  # (B,) lambda
    residual: torch.Tensor  # (B, ...) d = student - target
    diffusion_fraction: torch.Tensor  # share of the batch in the diffusion tail


def lct_loss(
    f,
    f_target,
    x0,
    noise,
    *,
    sigma_i,
    sigma_next,
    indices,
    n_scales: int,
    metric,
    c,
    diffusion: LowNoiseDiffusion,
    sigma_data: float,
    diffusion_denominator: float | None = None,
) -> LossTerms:
    """L = L_CT + w L_diff for one batch; `metric` a RobustMetric, `diffusion` the (w, r) part."""
    check_same_shape("x0", x0, "noise", noise)
    check_finite_on_host("x0", x0)
    check_finite_on_host("noise", noise)
    student, target = td_pair(f, f_target, x0, noise, sigma_i, sigma_next)
    weight = ict_weight(sigma_i, sigma_next)
    ct = consistency_loss(student, target, weight, metric, c).mean()
    mask = diffusion.mask(indices, n_scales) & (diffusion.weight > 0)
    diff = diffusion_loss(student, x0, sigma_i, mask, sigma_data, diffusion_denominator)
    return LossTerms(
        loss=ct + diffusion.weight * diff,
        consistency=ct.detach(),
        diffusion=diff.detach(),
        weight=weight.detach(),
        residual=(student - target).detach(),
        diffusion_fraction=mask.float().mean(),
    )
