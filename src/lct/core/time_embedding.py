"""The sinusoidal embedding of a noise level or time (Transformer / ADM positional features), shared by the
backbones' time embeddings and sCM's adaptive weight w_phi(t)."""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(c_noise: torch.Tensor, dim: int, max_period: float = 1e4) -> torch.Tensor:
    """[cos(c*w_k), sin(c*w_k)] with w_k = max_period^(-k/(dim/2)), k = 0..dim/2-1; (B,) -> (B, dim)."""
    dtype = torch.float64 if c_noise.dtype == torch.float64 else torch.float32
    half = dim // 2
    k = torch.arange(half, dtype=dtype, device=c_noise.device)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (half,)
    angles = c_noise.to(dtype)[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([angles.cos(), angles.sin()], dim=1)  # (B, dim)
