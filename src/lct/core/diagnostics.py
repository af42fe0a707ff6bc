"""Statistics of the TD residual d that the paper's argument rests on (heavy tails => robust metric)."""

from __future__ import annotations

import torch


@torch.no_grad()
def residual_stats(d: torch.Tensor, max_elems: int = 1 << 20) -> dict[str, float]:
    """std, excess kurtosis and fraction beyond the outer fences (Q1 - 3 IQR, Q3 + 3 IQR) of d's elements."""
    x = d.detach().flatten().float()
    if x.numel() > max_elems:  # quantiles sort; a strided subsample keeps this cheap on big batches
        x = x[:: x.numel() // max_elems + 1]
    mu, std = x.mean(), x.std(correction=0)
    kurt = ((x - mu) ** 4).mean() / std.clamp_min(1e-30) ** 4 - 3.0
    q1, q3 = torch.quantile(x, torch.tensor([0.25, 0.75], device=x.device))
    iqr = q3 - q1
    outer = ((x < q1 - 3 * iqr) | (x > q3 + 3 * iqr)).float().mean()
    return {"std": float(std), "kurtosis": float(kurt), "outer_fence_frac": float(outer)}
