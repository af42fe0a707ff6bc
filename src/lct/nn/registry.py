"""The one backbone registry: name -> factory, with the same names as the Hydra group conf/backbone/.

A backbone is a `Backbone` module F_theta(x (B,C,H,W), c_noise (B,)) -> (B,C,H,W) whose factory takes
`in_channels`, `resolution` (latent H = W) and keyword overrides. Register it with
`@register_backbone("name")` in any module of the `lct.nn` package (every module there is imported with
the package) and add `conf/backbone/<name>.yaml` with `_target_: lct.nn.build_backbone` and `name: <name>`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lct.errors import LctError

from .norms import UnknownNorm

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


class Backbone(nn.Module):
    """Base class of the networks F_theta: what lct.train.speed compiles (the preconditioning and the
    training loop around it stay eager)."""

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, c_extra: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,C,H,W), c_noise (B,), optional c_extra (B,) -> (B,C,H,W); c_extra is a second time label embedded
        like c_noise and added to the conditioning (None: exactly the single-time network), which MeanFlow
        (lct.core.meanflow) needs and the other objectives do not."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, c_noise[, c_extra])")


def register_backbone(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register `factory` under `name` (usable as a decorator); a name is registered once."""

    def add(f):
        if name in BACKBONES and BACKBONES[name] is not f:
            raise ValueError(f"backbone {name!r} is already registered ({BACKBONES[name]})")
        BACKBONES[name] = f
        return f

    return add if factory is None else add(factory)


def build_backbone(name: str, **overrides) -> nn.Module:
    """Instantiate a registered backbone, e.g. build_backbone('dit_B_2', in_channels=4, resolution=32)."""
    check_backbone_name(name)
    try:
        return BACKBONES[name](**overrides)
    except UnknownNorm as err:  # `norm=<option>` reaches every backbone; this one has other norms
        raise LctError(
            f"norm={err.kind!r} does not apply to backbone {name}: it supports {', '.join(err.choices)}; choose "
            f"one with norm=<name> (conf/norm/), or norm=null to keep conf/backbone/{name}.yaml's own"
        ) from None


def check_backbone_name(name) -> None:
    """LctError naming the registered backbones unless `name` is one."""
    if name not in BACKBONES:
        raise LctError(
            f"backbone.name={name!r} is not a registered backbone; choose one of {', '.join(sorted(BACKBONES))} "
            "(backbone=<name> picks its conf/backbone/ config)"
        )
