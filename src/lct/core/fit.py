"""Fitting the power law c(N) = exp(slope ln(N-1) + offset) to the TD-residual spread per curriculum stage.

The paper's adaptive c (slope -1.15, offset -0.85) is such a fit, made on one latent space; these
functions redo it for another (`python -m lct.fit_c`, experiments/c_fit/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lct.errors import LctError

from .c_schedules import ADAPTIVE_OFFSET, ADAPTIVE_SLOPE

PAPER_SLOPE, PAPER_OFFSET = ADAPTIVE_SLOPE, ADAPTIVE_OFFSET  # the paper's adaptive c (its one source: c_schedules)
STAGE_REDUCTIONS = ("median", "mean")


def power_law(n_scales, slope: float, offset: float) -> np.ndarray:
    """c(N) = exp(slope * ln(N-1) + offset) (float64 array; numpy's twin of lct.core.c_schedules.adaptive_c)."""
    n = np.asarray(n_scales, dtype=np.float64)
    if (n < 2).any():
        raise LctError(f"the power law needs N >= 2, got {n_scales}")
    return np.exp(slope * np.log(n - 1) + offset)


def fit_power_law(n_scales: Sequence[float], spread: Sequence[float]) -> tuple[float, float, float]:
    """(slope, offset, R^2) of ln spread = slope * ln(N-1) + offset, least squares in log space.

    R^2 is that of the log-space fit (1 on exact power-law data).
    """
    n = np.asarray(n_scales, dtype=np.float64)
    s = np.asarray(spread, dtype=np.float64)
    if n.shape != s.shape or n.ndim != 1:
        raise LctError(f"n_scales and spread must be 1-D of one length, got shapes {n.shape} and {s.shape}")
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise LctError("every spread must be finite and > 0 (the fit is in log space)")
    if (n < 2).any():
        raise LctError(f"every N must be >= 2 (ln(N-1) is the regressor), got {n.tolist()}")
    if np.unique(n).size < 2:
        raise LctError(
            f"the fit needs at least two curriculum stages (distinct N), got {np.unique(n).tolist()}; "
            "run longer or over more stages"
        )
    x, y = np.log(n - 1), np.log(s)
    slope, offset = np.polyfit(x, y, 1)
    ss_res = float(((y - (slope * x + offset)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(slope), float(offset), r2


def stage_spread(
    n_scales: Sequence[float], spread: Sequence[float], reduce: str = "median", skip: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stages N, one spread per stage, points per stage) from a step-ordered series of (N, spread) logs.

    `skip` drops that fraction of each stage's first points (the residual right after N doubles still
    reflects the coarser grid); `reduce` is the per-stage median (robust to spikes) or mean.
    """
    if reduce not in STAGE_REDUCTIONS:
        raise LctError(f"unknown stage reduction {reduce!r}; choose one of {STAGE_REDUCTIONS}")
    if not 0 <= skip < 1:
        raise LctError(f"skip must be in [0, 1), got {skip}")
    n = np.asarray(n_scales, dtype=np.float64)
    s = np.asarray(spread, dtype=np.float64)
    if n.shape != s.shape or n.ndim != 1:
        raise LctError(f"n_scales and spread must be 1-D of one length, got shapes {n.shape} and {s.shape}")
    keep = np.isfinite(n) & np.isfinite(s)
    n, s = n[keep], s[keep]
    if n.size == 0:
        raise LctError("no finite (N, spread) pairs to aggregate")
    stages = np.unique(n)
    values, counts = [], []
    for stage in stages:
        v = s[n == stage]
        v = v[math.floor(skip * v.size) :]
        values.append(np.median(v) if reduce == "median" else v.mean())
        counts.append(v.size)
    return stages, np.asarray(values), np.asarray(counts)
