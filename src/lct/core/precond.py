"""EDM-style preconditioning with the consistency boundary condition (Song et al. 2023 §3, iCT §3.1).

f_theta(x, sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x, c_noise(sigma)),
with c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 so that f(x, sigma_min) = x exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_sigma_range
from .noise_levels import NoiseLevels

# ----------------------------------------------------------------------------
# Scalings (unchecked: the hot path's sigma comes from a validated grid).


def _scalings(sigma: torch.Tensor, sigma_data: float, sigma_min: float):
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1.0 / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out, c_in


def boundary_scalings(sigma, noise: NoiseLevels):
    """(c_skip, c_out, c_in) at noise level sigma; ValueError outside [sigma_min, sigma_max]."""
    check_sigma_range("sigma", sigma, noise.sigma_min, noise.sigma_max)
    return _scalings(
        torch.as_tensor(sigma, dtype=torch.float64 if not torch.is_tensor(sigma) else None),
        noise.sigma_data,
        noise.sigma_min,
    )


def c_noise(sigma, check: bool = True) -> torch.Tensor:
    """Network conditioning c_noise = 1000 * 0.25 * ln(sigma) = 250 ln(sigma) (diffusers' sigma_to_t).

    The forward passes use check=False: their sigma is range-checked already (or comes from a validated
    grid on the device, where a check would cost a host sync per forward)."""
    s = torch.as_tensor(sigma, dtype=torch.float64 if not torch.is_tensor(sigma) else None)
    if check and (bool((s <= 0).any()) or not bool(torch.isfinite(s).all())):
        raise ValueError("c_noise needs finite sigma > 0")
    return 250.0 * torch.log(s)


# ----------------------------------------------------------------------------


class ConsistencyFunction(nn.Module):
    """f_theta = preconditioning around a backbone F_theta(x_in (B,C,H,W), c_noise (B,)) -> (B,C,H,W)."""

    def __init__(self, backbone: nn.Module, noise: NoiseLevels):
        super().__init__()
        self.backbone, self.noise = backbone, noise

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        # sigma: python float / CPU tensor are range-checked for free; device tensors come from the
        # validated Karras grid in training, and checking them would cost a host sync per forward.
        if not torch.is_tensor(sigma) or sigma.device.type == "cpu":
            check_sigma_range("sigma", sigma, self.noise.sigma_min, self.noise.sigma_max)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma  # (B,)
        scalings = _scalings(sigma, self.noise.sigma_data, self.noise.sigma_min)
        c_skip, c_out, c_in = (c.view(-1, 1, 1, 1) for c in scalings)
        F = self.backbone(c_in * x, c_noise(sigma, check=False))  # (B,C,H,W)
        return c_skip * x + c_out * F
