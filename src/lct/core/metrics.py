"""Robust metrics rho_c on the TD residual d = f_theta - f_theta^- (paper §4.2, Table 2(c)).

Each metric is a small object (the `method.metric` part, protocol `RobustMetric`): called as
metric(d, c) -> (B,). The per-sample form acts on m = mean over the D elements of d^2; with
`elementwise=True` rho acts on each d_j^2 and the result is averaged over D.
"""

from __future__ import annotations

import torch


class _Metric:
    positive_c = True  # c enters as a scale: must be > 0

    def __init__(self, elementwise: bool = False):
        self.elementwise = bool(elementwise)

    @staticmethod
    def rho(m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, d: torch.Tensor, c) -> torch.Tensor:
        if d.ndim < 2:
            raise ValueError(f"d must be batched (B, ...), got shape {tuple(d.shape)}")
        # c stays where it is given: a python number or CPU tensor is checked for free and enters the device's
        # arithmetic as a scalar (no copy to the device, no read back); a device tensor is not read.
        c = torch.as_tensor(c, dtype=d.dtype)
        if self.positive_c and c.device.type == "cpu" and not bool((c > 0).all()):
            raise ValueError(f"c must be > 0 for metric {type(self).__name__}, got {c}")
        sq = d.flatten(1).square()  # (B, D)
        return self.rho(sq, c).mean(1) if self.elementwise else self.rho(sq.mean(1), c)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(elementwise={self.elementwise})"


class L2(_Metric):
    """m."""

    positive_c = False

    @staticmethod
    def rho(m, c):
        return m


class PseudoHuber(_Metric):
    """iCT: sqrt(m + c^2) - c."""

    @staticmethod
    def rho(m, c):
        return (m + c**2).sqrt() - c


class Cauchy(_Metric):
    """sLCT: log(1 + m / (2 c^2))."""

    @staticmethod
    def rho(m, c):
        return torch.log1p(m / (2 * c**2))


class GemanMcClure(_Metric):
    """2m / (m + 4c^2), saturates at 2."""

    @staticmethod
    def rho(m, c):
        return 2 * m / (m + 4 * c**2)
