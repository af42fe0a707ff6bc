"""Schedules for the robust-metric scale c (iCT default, the paper's adaptive power law, an online estimate)."""
from __future__ import annotations

import math

import torch

from ._checks import check_choice

ICT_C_PER_SQRT_D = 0.00054          # iCT's c = 0.00054 sqrt(D), applied here to the per-element mean m
ADAPTIVE_SLOPE, ADAPTIVE_OFFSET = 1.15, 0.85   # fitted by the authors to the TD-residual spread per stage


def ict_default_c(dim: int) -> float:
    """c = 0.00054 sqrt(D) (0.03456 for a 4x32x32 latent)."""
    return ICT_C_PER_SQRT_D * math.sqrt(int(dim))


def adaptive_c(n_scales) -> torch.Tensor:
    """The paper's power law c(N) = exp(-1.15 ln(N-1) - 0.85) (float64 tensor)."""
    n = torch.as_tensor(n_scales, dtype=torch.float64)
    if bool((n < 2).any()):
        raise ValueError(f"n_scales must be >= 2, got {n_scales}")
    return torch.exp(-ADAPTIVE_SLOPE * torch.log(n - 1) - ADAPTIVE_OFFSET)


#----------------------------------------------------------------------------
# Schedule objects: called as c(n_scales) each step; only OnlineC carries state (saved in checkpoints).

class ConstantC:
    """A fixed c (value given, or the iCT default 0.00054 sqrt(D) when value is None)."""

    def __init__(self, dim: int, value: float | None = None):
        self.value = ict_default_c(dim) if value is None else float(value)
        if self.value <= 0:
            raise ValueError(f"c must be > 0, got {self.value}")

    def __call__(self, n_scales: int) -> float:
        return self.value


class AdaptiveC:
    """sLCT: the iCT default during the first curriculum stage (N <= s0 + 1), then c(N) = adaptive_c(N)."""

    def __init__(self, dim: int, s0: int = 10):
        self.first_stage_c, self.s0 = ict_default_c(dim), int(s0)

    def __call__(self, n_scales: int) -> float:
        return self.first_stage_c if n_scales <= self.s0 + 1 else float(adaptive_c(n_scales))


class OnlineC:
    """Beyond the paper: c tracks the live per-element std of the TD residual d (EMA over steps).

    c = scale * EMA(std(d)); the authors fitted c(N) to exactly this statistic offline, so scale = 1
    reproduces their intent while following the run actually being trained. Until the first
    update the iCT default holds.
    """

    def __init__(self, dim: int, momentum: float = 0.99, scale: float = 1.0, floor: float = 1e-6):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum, self.scale, self.floor = float(momentum), float(scale), float(floor)
        self.std_ema = ict_default_c(dim) / self.scale
        self.initialized = False

    def __call__(self, n_scales: int) -> float:
        return max(self.scale * self.std_ema, self.floor)

    @torch.no_grad()
    def update(self, d: torch.Tensor) -> None:
        """Fold the std of a (detached) residual batch into the running estimate."""
        std = float(d.detach().float().std(correction=0))
        if math.isfinite(std):
            m = self.momentum if self.initialized else 0.0
            self.std_ema, self.initialized = m * self.std_ema + (1 - m) * std, True

    def state_dict(self) -> dict:
        return {"std_ema": self.std_ema, "initialized": self.initialized}

    def load_state_dict(self, state: dict) -> None:
        self.std_ema, self.initialized = float(state["std_ema"]), bool(state["initialized"])


C_SCHEDULES = {"constant": ConstantC, "ict": ConstantC, "adaptive": AdaptiveC, "online": OnlineC}


def make_c_schedule(name: str, dim: int, **kwargs):
    """Build a c schedule by name: constant (value=...), ict (the default), adaptive, online."""
    check_choice("c schedule", name, C_SCHEDULES)
    if name == "constant" and kwargs.get("value") is None:
        raise ValueError("c schedule 'constant' needs a value (use 'ict' for 0.00054 sqrt(D))")
    return C_SCHEDULES[name](dim, **kwargs)
