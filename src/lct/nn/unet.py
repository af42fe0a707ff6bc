"""ADM UNet as re-implemented in EDM ("DhariwalUNet"; Dhariwal & Nichol 2021, Karras et al. 2022 App. F),
the paper's backbone (§5.1), with the norm as an ablation axis (Table 2(d)); written from its description.

Paper configuration on a 4x32x32 latent: 128 channels, multipliers (1, 2, 3, 4), 4 residual blocks per
level (5 in the decoder), attention at 16x16 and 8x8 with 64 channels per head, dropout 0.
Parameters: 151,325,956 with GroupNorm everywhere; with NsLN everywhere 165,468,676 of which
158,355,972 are trainable (the frozen NsLN scales are the rest).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lct.core.time_embedding import sinusoidal_embedding

from .layers import (
    batch_noise_labels,
    check_input,
    conv,
    linear,
    no_extra_time,
    resample,
    valid_resolutions,
    zeros_,
)
from .norms import NORMS, make_norm
from .registry import Backbone, register_backbone

# ----------------------------------------------------------------------------
# Multi-head self-attention over the H*W positions through torch's scaled_dot_product_attention: in the
# autocast dtype when autocast is on (flash kernels, which accumulate the softmax in fp32), in fp32 otherwise.
# Tokens are laid out as (B, HW, C) views of the channels_last memory order, so a channels_last network
# pays no layout copy here.


class SpatialAttention(nn.Module):
    """Pre-norm attention with a zero-initialized output projection, residual added by the caller."""

    def __init__(self, channels: int, resolution: int, channels_per_head: int, norm: str):
        super().__init__()
        self.heads = max(1, channels // channels_per_head)
        self.norm = make_norm(norm, channels, resolution)
        self.qkv = conv(channels, 3 * channels, 1)
        self.proj = conv(channels, channels, 1, zero=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).permute(0, 2, 3, 1)  # (B, H, W, 3C); channel = (3, nh, d)
        qkv = qkv.reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, nh, HW, d)
        a = F.scaled_dot_product_attention(*qkv.unbind(0))  # (B, nh, HW, d), 1/sqrt(d) scaling
        a = a.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W), channels_last strides
        return self.proj(a.contiguous(memory_format=_memory_format(x)))  # (B, C, H, W)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last if x is stored that way, else the default: the residual stream keeps its layout."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


# ----------------------------------------------------------------------------
# Residual block: norm0 -> SiLU -> [resample] -> conv0; norm1 modulated by the noise embedding as
# x*(1+scale)+shift -> SiLU -> dropout -> conv1 (zero); skip = [resample] -> 1x1 conv if widths differ.


class UNetBlock(nn.Module):
    """ADM residual block at output size `resolution`, optionally resampling and with attention."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_ch: int,
        resolution: int,
        *,
        norm: str,
        resample_mode: str | None = None,
        attention: bool = False,
        channels_per_head: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        # Layer-type norms are sized by the tensor they see: before a 'down' conv it is 2x larger.
        in_res = {"down": resolution * 2, "up": resolution // 2}.get(resample_mode, resolution)
        self.resample_mode = resample_mode
        self.norm0 = make_norm(norm, in_ch, in_res)
        self.conv0 = conv(in_ch, out_ch, 3)
        self.affine = linear(emb_ch, 2 * out_ch)
        self.norm1 = make_norm(norm, out_ch, resolution)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv(out_ch, out_ch, 3, zero=True)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else None
        self.attn = SpatialAttention(out_ch, resolution, channels_per_head, norm) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = resample(F.silu(self.norm0(x)), self.resample_mode)  # (B, Cin, H, W) at output size
        h = self.conv0(h)  # (B, Cout, H, W)
        scale, shift = self.affine(emb)[:, :, None, None].to(h.dtype).chunk(2, dim=1)  # 2 x (B, Cout, 1, 1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))  # (B, Cout, H, W)
        h = self.conv1(self.dropout(h))  # (B, Cout, H, W)
        x = resample(x, self.resample_mode)  # (B, Cin, H, W)
        x = h + (self.skip(x) if self.skip is not None else x)  # (B, Cout, H, W)
        if self.attn is not None:
            x = x + self.attn(x)  # (B, Cout, H, W)
        return x


# ----------------------------------------------------------------------------


class ADMUNet(Backbone):
    """F_theta(x (B,C,H,W), c_noise (B,)[, c_extra (B,)]) -> (B,C,H,W): EDM's DhariwalUNet with a selectable
    norm and, with extra_time=True, a second time label (MeanFlow's t - r)."""

    def __init__(
        self,
        in_channels: int = 4,
        resolution: int = 32,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] | None = (16, 8),
        channels_per_head: int = 64,
        emb_mult: int = 4,
        dropout: float = 0.0,
        norm: str = "nsln",
        out_norm: str | None = None,
        extra_time: bool = False,
    ):
        super().__init__()
        channel_mult = tuple(channel_mult)
        _validate(in_channels, resolution, channel_mult, norm, out_norm)
        self.in_channels, self.resolution = in_channels, resolution
        levels = [resolution >> i for i in range(len(channel_mult))]
        # None: attention only at the lowest resolution, which keeps small variants size-agnostic.
        attn = set(levels[-1:] if attn_resolutions is None else attn_resolutions)
        emb_ch = model_channels * emb_mult
        self.emb_dim = model_channels
        self.map0, self.map1 = linear(model_channels, emb_ch), linear(emb_ch, emb_ch)
        kw = dict(emb_ch=emb_ch, norm=norm, channels_per_head=channels_per_head, dropout=dropout)

        self.enc = nn.ModuleList()
        widths = []  # width of every encoder output, consumed as decoder skips (last first)
        cout = in_channels
        for level, (res, mult) in enumerate(zip(levels, channel_mult)):
            if level == 0:
                cout = model_channels * mult
                self.enc.append(conv(in_channels, cout, 3))
            else:
                self.enc.append(UNetBlock(cout, cout, resolution=res, resample_mode="down", **kw))
            widths.append(cout)
            for _ in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc.append(UNetBlock(cin, cout, resolution=res, attention=res in attn, **kw))
                widths.append(cout)

        self.dec = nn.ModuleList()
        self.dec_takes_skip = []
        for level in reversed(range(len(channel_mult))):
            res, mult = levels[level], channel_mult[level]
            if level == len(channel_mult) - 1:
                # EDM layout: the decoder opens at the lowest level with an attention block and a plain one.
                self._add_dec(UNetBlock(cout, cout, resolution=res, attention=True, **kw), False)
                self._add_dec(UNetBlock(cout, cout, resolution=res, **kw), False)
            else:
                self._add_dec(UNetBlock(cout, cout, resolution=res, resample_mode="up", **kw), False)
            for _ in range(num_blocks + 1):
                cin, cout = cout + widths.pop(), model_channels * mult
                self._add_dec(UNetBlock(cin, cout, resolution=res, attention=res in attn, **kw), True)
        self.out_norm = make_norm(out_norm or norm, cout, resolution)
        self.out_conv = conv(cout, in_channels, 3, zero=True)
        # A second time label enters as EDM's augment label does (DhariwalUNet's map_augment): its own
        # bias-free, zero-initialized linear map of the sinusoidal features, added before the shared MLP.
        # Built last, so every other layer starts as in the single-time network of the same seed.
        self.map_extra = zeros_(nn.Linear(model_channels, model_channels, bias=False)) if extra_time else None
        self.extra_time = bool(extra_time)

    def _add_dec(self, block: UNetBlock, takes_skip: bool) -> None:
        self.dec.append(block)
        self.dec_takes_skip.append(takes_skip)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, c_extra: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.resolution)
        extra = None if c_extra is None else batch_noise_labels(c_extra, x, "c_extra")
        emb = self.noise_embedding(batch_noise_labels(c_noise, x), extra)  # (B, E) fp32
        skips = []
        for layer in self.enc:
            x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)  # (B, C_l, H_l, W_l)
            skips.append(x)
        for block, takes_skip in zip(self.dec, self.dec_takes_skip):
            if takes_skip:
                x = torch.cat([x, skips.pop()], dim=1)  # (B, C + C_skip, H_l, W_l)
            x = block(x, emb)  # (B, C_l, H_l, W_l)
        # The output head in fp32: f_theta = c_skip x + c_out F feeds differences of nearby outputs.
        with torch.autocast(x.device.type, enabled=False):
            return self.out_conv(F.silu(self.out_norm(x.to(self.out_conv.weight.dtype))))  # (B, C, H, W)

    def noise_embedding(self, c_noise: torch.Tensor, c_extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) c_noise [and (B,) c_extra] -> (B, E) conditioning, in fp32 whatever the autocast state."""
        if c_extra is not None and self.map_extra is None:
            raise no_extra_time(self)
        with torch.autocast(c_noise.device.type, enabled=False):
            dtype = self.map0.weight.dtype
            emb = sinusoidal_embedding(c_noise, self.emb_dim).to(dtype)  # (B, mc)
            if c_extra is not None:
                emb = emb + self.map_extra(sinusoidal_embedding(c_extra, self.emb_dim).to(dtype))  # (B, mc)
            return F.silu(self.map1(F.silu(self.map0(emb))))  # (B, E)


def _validate(in_channels: int, resolution: int, channel_mult: tuple, norm: str, out_norm) -> None:
    """ValueError with the sizes that would work, before any layer is built."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if not channel_mult:
        raise ValueError("channel_mult must list at least one level")
    factor = 2 ** (len(channel_mult) - 1)
    if not isinstance(resolution, int) or resolution < factor or resolution % factor:
        raise ValueError(
            f"this UNet downsamples {len(channel_mult) - 1} times, so the latent resolution "
            f"must be a multiple of {factor} (e.g. {valid_resolutions(factor)}); got {resolution!r}"
        )
    for name in (norm, out_norm or norm):
        if name not in NORMS:
            raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


# ----------------------------------------------------------------------------
# Named configurations.


@register_backbone("unet_paper")
def unet_paper(in_channels: int = 4, resolution: int = 32, norm: str = "groupnorm", **overrides) -> ADMUNet:
    """The paper's UNet: ADM at 128 channels, (1,2,3,4), 4 blocks, attention at 16 and 8.

    `norm` is explicit: "groupnorm" is EDM's DhariwalUNet as published (Table 2(a) rows 1-5), "nsln" the
    paper's final network (non-scaling LayerNorm in every norm).
    """
    return ADMUNet(in_channels, resolution, norm=norm, **overrides)


@register_backbone("unet_tiny")
def unet_tiny(in_channels: int = 4, resolution: int = 8, norm: str = "groupnorm", **overrides) -> ADMUNet:
    """CPU-sized variant (1.9M params): 32 channels, (1, 2, 2), 2 blocks, attention at the lowest level."""
    kw = dict(model_channels=32, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=None)
    return ADMUNet(in_channels, resolution, norm=norm, **{**kw, **overrides})
