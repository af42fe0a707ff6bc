"""Exponential moving averages of parameters (evaluation EMA; an optional EMA target)."""

from __future__ import annotations

import torch


def ema_decay(step: int, decay: float, warmup: bool = False) -> float:
    """The decay at `step`: constant, or warmed up as min(decay, (1 + k)/(10 + k)) for short runs."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema_params, params, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * param, in place (decay 0 copies)."""
    ema_params, params = list(ema_params), list(params)
    if len(ema_params) != len(params):
        raise ValueError(f"EMA has {len(ema_params)} tensors but the model has {len(params)}")
    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
