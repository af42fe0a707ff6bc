"""Backbones F_theta(x (B,C,H,W), c_noise (B,)) -> (B,C,H,W): the paper's ADM UNet and the DiT family.

Pure PyTorch. Every factory takes `in_channels` and `resolution` (latent H = W) and raises ValueError
naming the sizes that work. `BACKBONES` is the one registry (names = conf/backbone/<name>.yaml);
`build_backbone(name, **overrides)` builds from it, with or without Hydra.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from .dit import DiT, dit, dit_tiny
from .norms import NORMS, NonScalingLayerNorm, make_norm
from .registry import BACKBONES, Backbone, build_backbone, register_backbone
from .unet import ADMUNet, unet_paper, unet_tiny

# A new backbone is one module in this package with a @register_backbone factory: import them all.
for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")


def trainable_parameters(module: nn.Module):
    """Parameters to hand to the optimizer: frozen ones (NsLN's unit scales) are left out."""
    return [p for p in module.parameters() if p.requires_grad]


__all__ = [
    "ADMUNet",
    "Backbone",
    "DiT",
    "NonScalingLayerNorm",
    "BACKBONES",
    "NORMS",
    "build_backbone",
    "dit",
    "dit_tiny",
    "make_norm",
    "register_backbone",
    "trainable_parameters",
    "unet_paper",
    "unet_tiny",
]
