"""Small building blocks shared by the backbones: initializers, noise labels, resampling, checks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# ----------------------------------------------------------------------------
# ADM/EDM initialization: kaiming-uniform scaled by sqrt(1/3), i.e. U(+-1/sqrt(fan_in)) for weight
# and bias alike; output layers of residual branches start at zero so every block is the identity.


def kaiming_uniform_(layer: nn.Module, gain: float = math.sqrt(1 / 3)) -> nn.Module:
    """Initialize a Linear/Conv2d in place with U(+-sqrt(3/fan_in)*gain) for weight and bias."""
    fan_in = layer.weight[0].numel()
    bound = math.sqrt(3.0 / fan_in) * gain
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound)
    return layer


def zeros_(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place (output convs: the network starts at F = 0)."""
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def conv(in_ch: int, out_ch: int, kernel: int, zero: bool = False) -> nn.Conv2d:
    """'Same' Conv2d with ADM init (or zero init for residual outputs)."""
    layer = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    return zeros_(layer) if zero else kaiming_uniform_(layer)


def linear(in_f: int, out_f: int) -> nn.Linear:
    """Linear with ADM init."""
    return kaiming_uniform_(nn.Linear(in_f, out_f))


# ----------------------------------------------------------------------------
# Resampling with the [1, 1] box filter of EDM's DhariwalUNet: a 2x2 mean to go down, and its
# transpose (x4 gain) to go up, which is nearest-neighbour duplication.


def resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    """Halve ('down'), double ('up') or keep (None) the spatial size of x (B, C, H, W)."""
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return x


# ----------------------------------------------------------------------------
# Noise labels (their sinusoidal embedding: lct.core.time_embedding).


def batch_noise_labels(c_noise, x: torch.Tensor, name: str = "c_noise") -> torch.Tensor:
    """c_noise as a (B,) tensor on x's device; a scalar or one-element input is broadcast."""
    c = torch.as_tensor(c_noise, device=x.device).reshape(-1)
    if c.numel() == 1:
        return c.expand(x.shape[0])
    if c.numel() != x.shape[0]:
        raise ValueError(f"{name} has {c.numel()} values for a batch of {x.shape[0]}; pass (B,) or a scalar")
    return c


def no_extra_time(backbone: nn.Module) -> ValueError:
    """The error for a second time label given to a backbone built without its embedding."""
    return ValueError(
        f"{type(backbone).__name__} was built without a second time input, so it cannot take c_extra; "
        "build it with extra_time=True (MeanFlow's student builder does)"
    )


def check_input(x: torch.Tensor, channels: int, resolution: int) -> None:
    """ValueError unless x is (B, channels, resolution, resolution)."""
    if x.ndim != 4 or x.shape[1] != channels or x.shape[2] != resolution or x.shape[3] != resolution:
        raise ValueError(
            f"backbone built for (B, {channels}, {resolution}, {resolution}) latents, "
            f"got {tuple(x.shape)}; rebuild it with in_channels={x.shape[1] if x.ndim == 4 else '?'} "
            f"and a matching resolution"
        )


def valid_resolutions(multiple: int, upto: int = 128) -> str:
    """A short list of sizes divisible by `multiple`, for error messages."""
    return ", ".join(str(r) for r in range(multiple, upto + 1, multiple)[:8])
