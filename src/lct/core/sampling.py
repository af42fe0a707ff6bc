"""Consistency samplers (Song et al. 2023, Alg. 1): one step, two steps, any list of sigmas."""

from __future__ import annotations

import math

import torch

from ._checks import check_finite


@torch.no_grad()
def multistep_sample(
    f, noise: torch.Tensor, sigmas, sigma_min: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x0 after len(sigmas) evaluations: x0 = f(sigma_0 n); x0 = f(x0 + sqrt(s^2 - sigma_min^2) z, s)."""
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"sigmas must be a non-empty strictly descending list, got {sigmas}")
    if sigmas[-1] < sigma_min:
        raise ValueError(f"sigmas must stay >= sigma_min={sigma_min}, got {sigmas}")
    check_finite("noise", noise)
    x0 = f(sigmas[0] * noise, sigmas[0])
    for s in sigmas[1:]:
        # Draw on the generator's device (a CPU generator makes samples identical across devices).
        z = torch.randn(
            noise.shape,
            generator=generator,
            dtype=noise.dtype,
            device=generator.device if generator is not None else noise.device,
        ).to(noise.device)
        x0 = f(x0 + math.sqrt(s**2 - sigma_min**2) * z, s)
    return x0


def onestep_sample(f, noise: torch.Tensor, sigma_max: float, sigma_min: float) -> torch.Tensor:
    """1 NFE: x0 = f(sigma_max n, sigma_max)."""
    return multistep_sample(f, noise, [sigma_max], sigma_min)


def twostep_sample(
    f,
    noise: torch.Tensor,
    sigma_mid: float,
    sigma_max: float,
    sigma_min: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """2 NFE with the intermediate level sigma_mid (NoiseLevels.sigma_mid: the paper's grid index 430 of 641)."""
    return multistep_sample(f, noise, [sigma_max, sigma_mid], sigma_min, generator)


# ----------------------------------------------------------------------------
# One entry point per model kind: the registry (lct.core.kinds) says which sampler and which times a kind's
# model takes; imported last because the registry's built-in entries use the samplers above.

from .kinds import DEFAULT_NFE, KINDS, nfe_sigmas, sample  # noqa: E402,F401  (re-exported)
