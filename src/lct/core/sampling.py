"""Consistency samplers (Song et al. 2023, Alg. 1): one step, two steps, any list of sigmas."""

from __future__ import annotations

import math

import torch

from ._checks import check_finite
from .edm import heun_sigmas, heun_solve, heun_steps_for_nfe
from .noise_levels import PAPER, NoiseLevels


@torch.no_grad()
def multistep_sample(
    f, noise: torch.Tensor, sigmas, sigma_min: float = PAPER.sigma_min, generator: torch.Generator | None = None
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


def onestep_sample(f, noise: torch.Tensor, sigma_max: float = PAPER.sigma_max) -> torch.Tensor:
    """1 NFE: x0 = f(sigma_max n, sigma_max)."""
    return multistep_sample(f, noise, [sigma_max])


def twostep_sample(
    f,
    noise: torch.Tensor,
    sigma_mid: float,
    sigma_max: float = PAPER.sigma_max,
    sigma_min: float = PAPER.sigma_min,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """2 NFE with the intermediate level sigma_mid (NoiseLevels.sigma_mid: the paper's grid index 430 of 641)."""
    return multistep_sample(f, noise, [sigma_max, sigma_mid], sigma_min, generator)


# ----------------------------------------------------------------------------
# One entry point per model kind: a consistency model samples on a sigma list (1 or 2 NFE), the EDM
# denoiser with Heun's sampler on a time grid ending at 0 (any odd NFE).

KINDS = ("consistency", "diffusion")
# The NFE a run's in-loop callbacks and lct.evaluate use unless told: the paper's 1 and 2 for
# consistency; 1 and EDM's 35 (18 Heun steps) for diffusion.
DEFAULT_NFE = {"consistency": (1, 2), "diffusion": (1, 35)}


def nfe_sigmas(kind: str, levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    """The sigmas that `sample` takes for `nfe` evaluations: consistency [sigma_max(, sigma_mid)];
    diffusion the Heun grid t_0 = sigma_max > ... > t_N = 0 with 2N - 1 = nfe (LctError otherwise)."""
    if kind == "diffusion":
        return heun_sigmas(heun_steps_for_nfe(nfe), levels.sigma_min, levels.sigma_max, levels.rho).tolist()
    return levels.nfe_sigmas(nfe, sigma_mid)


def sample(
    kind: str, model, noise: torch.Tensor, sigmas, levels: NoiseLevels, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x0 from unit noise: multistep_sample for a consistency function, heun_solve for an EDM denoiser."""
    if kind == "diffusion":
        return heun_solve(model, noise, sigmas)
    return multistep_sample(model, noise, sigmas, levels.sigma_min, generator)
