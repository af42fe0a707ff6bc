"""Exponential moving averages of parameters (evaluation EMA; an optional EMA target)."""

from __future__ import annotations

from numbers import Real

import torch

#: `warmup: true` means this w in min(decay, (1 + k)/(w + k)).
DEFAULT_WARMUP = 10


def warmup_width(warmup: bool | float) -> float | None:
    """w of the warm-up min(decay, (1 + k)/(w + k)): None for no warm-up, 10 for `true`, else the number (> 1)."""
    if warmup is False or warmup is None:
        return None
    w = DEFAULT_WARMUP if warmup is True else warmup
    if not isinstance(w, Real) or w <= 1:
        raise ValueError(f"EMA warm-up must be true, false or a number w > 1, got {warmup!r}")
    return float(w)


def ema_decay(step: int, decay: float, warmup: bool | float = False) -> float:
    """The decay at step k: constant, or warmed up as min(decay, (1 + k)/(w + k)) for short runs.

    While the warm-up binds, the average weights the iterate of step j by Gamma(j + w)/Gamma(j + 2), about
    j^(w - 2): w = 2 is the running mean of every iterate (and the initial weights, as one more), the default
    w = 10 weights by j^8 and so averages about the last 1/(w - 1) of the run (docs/method.md §6).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    w = warmup_width(warmup)
    return decay if w is None else min(decay, (1 + step) / (w + step))


@torch.no_grad()
def ema_update(ema_params, params, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * param, in place (decay 0 copies)."""
    ema_params, params = list(ema_params), list(params)
    if len(ema_params) != len(params):
        raise ValueError(f"EMA has {len(ema_params)} tensors but the model has {len(params)}")
    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
