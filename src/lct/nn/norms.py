"""Normalization layers for the backbones: the norm ablation axis of the paper (Table 2(d)).

Every UNet norm is built through `make_norm(kind, channels, resolution)`. Layer/RMS/NsLN normalize
over [C, H, W] of one sample, so they need the spatial size of the tensor they see; group and
instance norm do not, but take it for a uniform signature.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("groupnorm", "instancenorm", "layernorm", "rmsnorm", "nsln")  # the UNet's (make_norm)
TOKEN_NORMS = ("layernorm", "rmsnorm", "nsln")  # the DiT's (make_token_norm): per token, before adaLN
EPS = 1e-5  # EDM/ADM's eps for every norm; the paper's NsLN keeps it


# ----------------------------------------------------------------------------
# Non-scaling LayerNorm (paper abstract, Table 2(d)): LayerNorm over [C, H, W] with the elementwise
# scale frozen at 1 and a learnable bias. The paper adopts it "to better capture the statistics of the
# features and reduce outlier impact"; without a learnable scale no channel or position can be
# amplified, in the spirit of Outlier Suppression (Wei et al. 2022).


class NonScalingLayerNorm(nn.LayerNorm):
    """LayerNorm over `shape` with weight fixed at 1 (not trained) and a learnable bias, init 0."""

    def __init__(self, shape, eps: float = EPS):
        super().__init__(shape, eps=eps, elementwise_affine=True, bias=True)
        # The weight stays a (frozen) parameter so state dicts match a plain LayerNorm's layout
        # and parameter counts match the paper's (165.5M total, 158.4M trainable).
        self.weight.requires_grad_(False)  # LayerNorm's init already set weight = 1, bias = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The scale is left out of the computation, so it stays exactly 1 (and gets no gradient,
        # hence no weight decay) even if some caller re-enables requires_grad on the whole model.
        # Statistics in the parameters' dtype (fp32) under autocast, as CUDA autocast does for layer_norm;
        # CPU autocast would mix a bf16 input with the fp32 bias, whose backward fails.
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.to(self.bias.dtype), self.normalized_shape, None, self.bias, self.eps)


# ----------------------------------------------------------------------------


class UnknownNorm(ValueError):
    """A norm a backbone does not have; `choices` are the ones it does (lct.nn.build_backbone names both)."""

    def __init__(self, kind: str, choices: tuple[str, ...]):
        super().__init__(f"unknown norm {kind!r}; choose one of {', '.join(choices)}")
        self.kind, self.choices = kind, choices


def group_count(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """ADM/EDM's GroupNorm rule (32 groups, fewer when a group would hold < 4 channels), reduced to
    a divisor of `channels` so that widths such as 144 still work."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:
        groups -= 1
    return groups


def make_norm(kind: str, channels: int, resolution: int) -> nn.Module:
    """Norm over a (B, channels, resolution, resolution) tensor; `kind` is one of NORMS."""
    shape = [channels, resolution, resolution]
    if kind == "groupnorm":
        return nn.GroupNorm(group_count(channels), channels, eps=EPS)
    if kind == "instancenorm":
        # GroupNorm with one channel per group is instance norm with a per-channel affine; unlike
        # nn.InstanceNorm2d it has no running stats, so train and eval behave the same.
        return nn.GroupNorm(channels, channels, eps=EPS)
    if kind == "layernorm":
        return nn.LayerNorm(shape, eps=EPS)
    if kind == "rmsnorm":
        return nn.RMSNorm(shape, eps=EPS)
    if kind == "nsln":
        return NonScalingLayerNorm(shape)
    raise UnknownNorm(kind, NORMS)


def make_token_norm(kind: str, width: int) -> nn.Module:
    """Per-token norm over the last dim for transformers (DiT), before adaLN modulation."""
    if kind == "layernorm":
        # adaLN supplies scale and shift, so the norm itself carries no affine (DiT).
        return nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
    if kind == "rmsnorm":
        return nn.RMSNorm(width, eps=1e-6, elementwise_affine=False)
    if kind == "nsln":
        return NonScalingLayerNorm(width, eps=1e-6)
    raise UnknownNorm(kind, TOKEN_NORMS)
