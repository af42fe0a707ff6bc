"""The sinusoidal embedding of a noise level or time (Transformer / ADM positional features), shared by the
backbones' time embeddings and sCM's adaptive weight w_phi(t).

Computed in fp32 whatever the autocast state: the consistency backbones' c_noise = 250 ln(sigma) spans about
-1554..+1096, and bf16 cannot resolve phases of arguments that large. fp64 labels stay fp64, so a float64 network
differentiates its time input to float64 precision (finite-difference checks of a JVP, docs/method.md)."""

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
