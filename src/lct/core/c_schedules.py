"""Schedules for the robust-metric scale c (the `method.c` part, protocol `CSchedule`).

c(n_scales, step) -> float each step; `observe(residual)` after every finite step; `state_dict` /
`load_state_dict` carry any state into checkpoints. The builder passes the run's shape as keywords:
`dim` = D = C*H*W and `total_steps` = K (lct.builders.build_objective). The schedules here depend on
D and N(k) only, so they accept K and leave it unused; a schedule of the run's progress k / K reads it.
"""

from __future__ import annotations

import math

import torch

ICT_C_PER_SQRT_D = 0.00054  # iCT's c = 0.00054 sqrt(D), applied here to the per-element mean m
ADAPTIVE_SLOPE, ADAPTIVE_OFFSET = -1.15, -0.85  # the paper's fit: ln c = slope ln(N-1) + offset


def ict_default_c(dim: int) -> float:
    """c = 0.00054 sqrt(D) (0.03456 for a 4x32x32 latent)."""
    return ICT_C_PER_SQRT_D * math.sqrt(int(dim))


def adaptive_c(n_scales, slope: float = ADAPTIVE_SLOPE, offset: float = ADAPTIVE_OFFSET) -> torch.Tensor:
    """The power law c(N) = exp(slope ln(N-1) + offset) (float64 tensor)."""
    n = torch.as_tensor(n_scales, dtype=torch.float64)
    if bool((n < 2).any()):
        raise ValueError(f"n_scales must be >= 2, got {n_scales}")
    return torch.exp(slope * torch.log(n - 1) + offset)


class Stateless:
    """The CSchedule protocol's optional methods for a schedule that keeps no state."""

    def observe(self, residual: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ConstantC(Stateless):
    """A fixed c (value given, or the iCT default 0.00054 sqrt(D) when value is None)."""

    def __init__(self, dim: int, value: float | None = None, total_steps: int | None = None):
        self.value = ict_default_c(dim) if value is None else float(value)
        if self.value <= 0:
            from lct.errors import LctError

            raise LctError(f"method.c.value must be > 0, got {self.value}")

    def __call__(self, n_scales: int, step: int) -> float:
        return self.value


class AdaptiveC(Stateless):
    """sLCT: the iCT default during the first curriculum stage (N <= s0 + 1), then
    c(N) = exp(slope ln(N-1) + offset)."""

    def __init__(
        self,
        dim: int,
        s0: int = 10,
        slope: float = ADAPTIVE_SLOPE,
        offset: float = ADAPTIVE_OFFSET,
        total_steps: int | None = None,
    ):
        self.first_stage_c, self.s0 = ict_default_c(dim), int(s0)
        self.slope, self.offset = float(slope), float(offset)

    def __call__(self, n_scales: int, step: int) -> float:
        if n_scales <= self.s0 + 1:
            return self.first_stage_c
        return float(adaptive_c(n_scales, self.slope, self.offset))


class OnlineC:
    """Beyond the paper: c tracks the live per-element std of the TD residual d (EMA over steps).

    c = scale * EMA(std(d)); the authors fitted c(N) to exactly this statistic offline, so scale = 1
    reproduces their intent while following the run actually being trained. Until the first
    observation the iCT default holds.
    """

    def __init__(
        self, dim: int, momentum: float = 0.99, scale: float = 1.0, floor: float = 1e-6, total_steps: int | None = None
    ):
        if not 0 <= momentum < 1:
            from lct.errors import LctError

            raise LctError(f"method.c.momentum must be in [0, 1), got {momentum}")
        self.momentum, self.scale, self.floor = float(momentum), float(scale), float(floor)
        self.std_ema = ict_default_c(dim) / self.scale
        self.initialized = False

    def __call__(self, n_scales: int, step: int) -> float:
        return max(self.scale * self.std_ema, self.floor)

    @torch.no_grad()
    def observe(self, residual: torch.Tensor) -> None:
        """Fold the std of a (detached) residual batch into the running estimate."""
        std = float(residual.detach().float().std(correction=0))
        if math.isfinite(std):
            m = self.momentum if self.initialized else 0.0
            self.std_ema, self.initialized = m * self.std_ema + (1 - m) * std, True

    def state_dict(self) -> dict:
        return {"std_ema": self.std_ema, "initialized": self.initialized}

    def load_state_dict(self, state: dict) -> None:
        self.std_ema, self.initialized = float(state["std_ema"]), bool(state["initialized"])
