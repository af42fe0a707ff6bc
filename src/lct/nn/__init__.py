"""Backbones F_theta(x (B,C,H,W), c_noise (B,)) -> (B,C,H,W): the paper's ADM UNet and the DiT family.

Pure PyTorch. Every constructor takes `in_channels` and `resolution` (latent H = W) and raises
ValueError naming the sizes that work; `build_backbone(name, **overrides)` is the registry for use
without Hydra (the Hydra configs live in conf/backbone/).
"""
from __future__ import annotations

from functools import partial

from torch import nn

from .dit import DIT_MODELS, DiT, dit, dit_tiny
from .norms import NORMS, NonScalingLayerNorm, make_norm
from .unet import ADMUNet, unet_paper, unet_tiny

BACKBONES = {
    "unet_paper": unet_paper,  # the paper's UNet, NsLN in every norm
    "unet_paper_gn": partial(unet_paper, norm="groupnorm"),  # EDM's DhariwalUNet as published
    "unet_tiny": unet_tiny,
    "dit_tiny": dit_tiny,
    **DIT_MODELS,  # "DiT-S/1" ... "DiT-XL/4"
}


def build_backbone(name: str, **overrides) -> nn.Module:
    """Instantiate a registered backbone, e.g. build_backbone('DiT-B/2', in_channels=4, resolution=32)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(BACKBONES)}")
    return BACKBONES[name](**overrides)


def trainable_parameters(module: nn.Module):
    """Parameters to hand to the optimizer: frozen ones (NsLN's unit scales) are left out."""
    return [p for p in module.parameters() if p.requires_grad]


__all__ = ["ADMUNet", "DiT", "NonScalingLayerNorm", "BACKBONES", "NORMS", "build_backbone", "dit",
           "dit_tiny", "make_norm", "trainable_parameters", "unet_paper", "unet_tiny"]
