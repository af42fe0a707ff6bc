"""Diffusion Transformer with adaLN-Zero (Peebles & Xie 2023), the second backbone family; written from its
description. Unconditional: the conditioning vector is the timestep embedding of c_noise alone.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from lct.core.time_embedding import sinusoidal_embedding

from .layers import batch_noise_labels, check_input, no_extra_time, valid_resolutions
from .norms import make_token_norm
from .registry import Backbone, register_backbone


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


# ----------------------------------------------------------------------------
# Fixed 2-D sin-cos positions (a buffer: DiT keeps them frozen). Half the width encodes the row,
# half the column, each as [sin, cos] over geometric frequencies 1e4^(-k/(D/4)).


def sincos_2d(width: int, grid: int) -> torch.Tensor:
    """(grid*grid, width) position table; width must be divisible by 4."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # (g, g) each
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        angles = coord[:, None] * omega[None, :]  # (T, D/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()  # (T, D)


class TimestepEmbedder(nn.Module):
    """c_noise (B,) -> 256 sinusoidal features ([cos, sin], max period 1e4) -> MLP -> (B, hidden)."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        # fp32 whatever the autocast state: bf16 cannot resolve the phases of c_noise ~ 1e3 (lct.core.time_embedding).
        with torch.autocast(c.device.type, enabled=False):
            return self.mlp(sinusoidal_embedding(c, self.freq_dim).to(self.mlp[0].weight.dtype))  # (B, hidden)


# ----------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention through torch's scaled_dot_product_attention."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        # Optional affine-free per-head q/k LayerNorm, a common guard against attention-logit growth.
        self.q_norm = nn.LayerNorm(hidden // heads, elementwise_affine=False) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(hidden // heads, elementwise_affine=False) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, dh)
        q, k, v = qkv.unbind(0)  # 3 x (B, nh, T, dh)
        a = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)  # (B, nh, T, dh)
        return self.proj(a.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class DiTBlock(nn.Module):
    """adaLN-Zero block: gated attention and MLP branches, shift/scale/gate regressed from c."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, norm: str, qk_norm: bool):
        super().__init__()
        self.norm1, self.norm2 = make_token_norm(norm, hidden), make_token_norm(norm, hidden)
        self.attn = Attention(hidden, heads, qk_norm)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sa, ca, ga, sm, cm, gm = self.ada(c)[:, None].chunk(6, dim=-1)  # 6 x (B, 1, D)
        x = x + ga * self.attn(_modulate(self.norm1(x), sa, ca))  # (B, T, D)
        return x + gm * self.mlp(_modulate(self.norm2(x), sm, cm))  # (B, T, D)


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a linear map of each token to its p*p*C output values."""

    def __init__(self, hidden: int, patch: int, out_channels: int, norm: str):
        super().__init__()
        self.norm = make_token_norm(norm, hidden)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c)[:, None].chunk(2, dim=-1)  # 2 x (B, 1, D)
        # The output projection in fp32, as the UNet's head: f_theta feeds differences of nearby outputs.
        with torch.autocast(x.device.type, enabled=False):
            dt = self.linear.weight.dtype
            return self.linear(_modulate(self.norm(x.to(dt)), shift.to(dt), scale.to(dt)))  # (B, T, p*p*C)


# ----------------------------------------------------------------------------


class DiT(Backbone):
    """F_theta(x (B,C,H,W), c_noise (B,)[, c_extra (B,)]) -> (B,C,H,W) as a patch transformer with adaLN-Zero;
    with extra_time=True a second time label (MeanFlow's t - r) is embedded too."""

    def __init__(
        self,
        in_channels: int = 4,
        resolution: int = 32,
        patch_size: int = 2,
        hidden_size: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm: str = "layernorm",
        qk_norm: bool = False,
        extra_time: bool = False,
    ):
        super().__init__()
        _validate(in_channels, resolution, patch_size, hidden_size, num_heads)
        self.in_channels, self.resolution, self.patch = in_channels, resolution, patch_size
        self.grid = resolution // patch_size
        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_2d(hidden_size, self.grid)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, norm, qk_norm) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size, in_channels, norm)
        self._init_weights()
        # A second time label has its own timestep embedder whose output is added to c, as DiT adds its class
        # embedding; built after the rest is initialized, so every other layer starts as in the single-time
        # network of the same seed.
        self.extra_embedder = _timestep_embedder(hidden_size) if extra_time else None
        self.extra_time = bool(extra_time)

    def _init_weights(self) -> None:
        # DiT: xavier everywhere, N(0, 0.02) for the timestep MLP, and zero for every adaLN regressor
        # and the final projection, so each block starts as the identity and the output is F = 0.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for ada in [b.ada for b in self.blocks] + [self.final.ada]:
            nn.init.zeros_(ada[-1].weight)
            nn.init.zeros_(ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, c_extra: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.resolution)
        b, ch, p, g = x.shape[0], self.in_channels, self.patch, self.grid
        c = self.t_embedder(batch_noise_labels(c_noise, x))  # (B, D)
        if c_extra is not None:
            if self.extra_embedder is None:
                raise no_extra_time(self)
            c = c + self.extra_embedder(batch_noise_labels(c_extra, x, "c_extra"))  # (B, D)
        h = self.x_embedder(x).flatten(2).transpose(1, 2)  # (B, T, D), T = (H/p)*(W/p)
        h = h + self.pos_embed.to(h.dtype)  # (B, T, D)
        for block in self.blocks:
            h = block(h, c)  # (B, T, D)
        h = self.final(h, c)  # (B, T, p*p*C)
        h = h.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return h.reshape(b, ch, g * p, g * p)  # (B, C, H, W)


def _timestep_embedder(hidden: int) -> TimestepEmbedder:
    """A TimestepEmbedder with DiT's initialization of its MLP: N(0, 0.02) weights, zero biases."""
    embedder = TimestepEmbedder(hidden)
    for layer in (embedder.mlp[0], embedder.mlp[2]):
        nn.init.normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)
    return embedder


def _validate(in_channels: int, resolution: int, patch: int, hidden: int, heads: int) -> None:
    """ValueError with the sizes that would work, before any layer is built."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if not isinstance(resolution, int) or resolution < patch or resolution % patch:
        raise ValueError(
            f"DiT with patch size {patch} needs a latent resolution divisible by {patch} "
            f"(e.g. {valid_resolutions(patch)}); got {resolution!r}"
        )
    if hidden % heads or hidden % 4:
        raise ValueError(
            f"hidden_size {hidden} must be divisible by num_heads {heads} and by 4 (2-D sin-cos positions)"
        )


# ----------------------------------------------------------------------------
# Named sizes (DiT paper Table 1): depth, hidden width, heads; each at patch 1, 2 and 4.

DIT_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def dit(size: str, patch_size: int, in_channels: int = 4, resolution: int = 32, **overrides) -> DiT:
    """DiT-<size>/<patch_size>, e.g. dit('B', 2) for the authors' DiT-B/2."""
    if size not in DIT_SIZES:
        raise ValueError(f"unknown DiT size {size!r}; choose one of {', '.join(DIT_SIZES)}")
    depth, hidden, heads = DIT_SIZES[size]
    kw = {"depth": depth, "hidden_size": hidden, "num_heads": heads, **overrides}
    return DiT(in_channels, resolution, patch_size, **kw)


@register_backbone("dit_tiny")
def dit_tiny(in_channels: int = 4, resolution: int = 8, **overrides) -> DiT:
    """CPU-sized DiT (1.9M params): 6 blocks of width 128, 2 heads, patch 2."""
    kw = {"patch_size": 2, "depth": 6, "hidden_size": 128, "num_heads": 2, **overrides}
    return DiT(in_channels, resolution, **kw)


for _size in DIT_SIZES:
    for _patch in (1, 2, 4):
        register_backbone(f"dit_{_size}_{_patch}", partial(dit, _size, _patch))
