"""sCM's samplers (Lu & Song 2024, §5): 1 NFE x0 = f(sigma_d z, pi/2); 2 NFE re-noise to t_mid and apply f again
(lct.core.scm; docs/method.md, "sCM")."""

from __future__ import annotations

import math

import torch

from lct.errors import LctError

from ._checks import check_finite
from .noise_levels import NoiseLevels


def check_times(times) -> list[float]:
    """The sampling times as floats; LctError unless they descend strictly within (0, pi/2]."""
    times = [float(s) for s in times]
    ok = bool(times) and all(0 < s <= math.pi / 2 + 1e-12 for s in times)
    if not ok or any(a <= b for a, b in zip(times, times[1:])):
        raise LctError(
            f"an scm model samples at TrigFlow times descending within (0, pi/2], got {times} (lct.sample "
            "--sigmas takes such times for an scm checkpoint; --nfe 1 or 2 picks them)"
        )
    return times


@torch.no_grad()
def scm_sample(f, noise: torch.Tensor, times, sigma_data: float, generator: torch.Generator | None = None):
    """x0 after len(times) evaluations: x0 = f(sigma_d n, t_0); x0 = f(cos t x0 + sin t sigma_d z, t) for each
    further t (z fresh unit noise from `generator`, drawn on its device)."""
    times = check_times(times)
    check_finite("noise", noise)
    x0 = f(sigma_data * noise, times[0])
    for t in times[1:]:
        dev = generator.device if generator is not None else noise.device
        z = torch.randn(noise.shape, generator=generator, dtype=noise.dtype, device=dev).to(noise.device)
        x0 = f(math.cos(t) * x0 + math.sin(t) * sigma_data * z, t)
    return x0


def scm_times(levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    """[pi/2] for 1 NFE; [pi/2, arctan(sigma_mid / sigma_d)] for 2, sigma_mid defaulting to the run's
    method.sigma.mid (conf/experiment/scm.yaml sets sigma_d tan 1.1: the paper's t_mid = 1.1)."""
    if nfe == 1:
        return [math.pi / 2]
    if nfe == 2:
        mid = float(levels.sigma_mid if sigma_mid is None else sigma_mid)
        if not mid > 0:
            raise LctError(f"the 2-NFE intermediate sigma must be > 0, got {mid}")
        return [math.pi / 2, math.atan(mid / levels.sigma_data)]
    raise LctError(f"an scm model samples at 1 or 2 NFE (or explicit TrigFlow times), got --nfe {nfe}")
