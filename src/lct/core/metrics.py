"""Robust metrics rho_c on the TD residual d = f_theta - f_theta^- (paper §3.2, Table 2(c)).

Per-sample forms act on m = mean over the D elements of d^2 (as the authors' code and SPEC §1);
the element-wise forms apply rho to each d_j^2 and then average over D. Both return shape (B,).
"""
from __future__ import annotations

import torch

from ._checks import check_choice


def _l2(m, c):
    return m


def _pseudo_huber(m, c):                 # iCT: sqrt(m + c^2) - c
    return (m + c**2).sqrt() - c


def _cauchy(m, c):                       # sLCT: log(1 + m / (2 c^2))
    return torch.log1p(m / (2 * c**2))


def _geman_mcclure(m, c):                # 2m / (m + 4c^2), saturates at 2
    return 2 * m / (m + 4 * c**2)


_RHO = {"l2": _l2, "pseudo_huber": _pseudo_huber, "cauchy": _cauchy, "geman_mcclure": _geman_mcclure}
METRICS = tuple(_RHO) + tuple(f"{k}_elementwise" for k in _RHO)


def robust_metric(name: str, d: torch.Tensor, c) -> torch.Tensor:
    """rho_c(d) per sample, shape (B,), for d of shape (B, ...); `name` in METRICS."""
    check_choice("robust metric", name, METRICS)
    if d.ndim < 2:
        raise ValueError(f"d must be batched (B, ...), got shape {tuple(d.shape)}")
    c = torch.as_tensor(c, dtype=d.dtype, device=d.device)
    if name != "l2" and not bool((c > 0).all()):
        raise ValueError(f"c must be > 0 for metric {name!r}, got {c}")
    sq = d.flatten(1).square()                                               # (B, D)
    if name.endswith("_elementwise"):
        return _RHO[name.removesuffix("_elementwise")](sq, c).mean(1)
    return _RHO[name](sq.mean(1), c)
