"""The backbones' fast path: SDPA attention equals the plain formula, channels_last changes nothing,
the noise embedding and the output head stay fp32 under bf16 autocast."""

import math

import pytest
import torch

from lct.nn import NORMS, build_backbone
from lct.nn.unet import SpatialAttention


def _randomized(model):
    # Zero-initialized output layers would hide every difference; perturb all trainable weights.
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model


def _attention_by_formula(attn: SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, channels split as (q|k|v, head, d), written out in fp64."""
    b, c, h, w = x.shape
    nh, d = attn.heads, c // attn.heads
    qkv = attn.qkv(attn.norm(x)).double().reshape(b, 3, nh, d, h * w)  # (B, 3, nh, d, HW)
    q, k, v = qkv.unbind(1)  # (B, nh, d, HW)
    logits = torch.einsum("bndi,bndj->bnij", q, k) / math.sqrt(d)  # (B, nh, HW, HW)
    a = torch.einsum("bnij,bndj->bndi", logits.softmax(-1), v)  # (B, nh, d, HW)
    return attn.proj(a.reshape(b, c, h, w).float())


@pytest.mark.parametrize("channels,heads_width", [(64, 64), (96, 32), (128, 64)])
def test_attention_equals_the_formula_in_fp32(channels, heads_width):
    attn = _randomized(SpatialAttention(channels, 8, heads_width, "groupnorm"))
    x = torch.randn(3, channels, 8, 8)
    torch.testing.assert_close(attn(x), _attention_by_formula(attn, x), atol=1e-5, rtol=1e-5)


def test_channels_last_gives_the_same_output_and_keeps_the_layout():
    model = _randomized(build_backbone("unet_tiny", in_channels=4, resolution=8, norm="nsln"))
    x, c = torch.randn(4, 4, 8, 8), torch.randn(4) * 500
    ref = model(x, c)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last), c)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    attn = next(m for m in model.modules() if isinstance(m, SpatialAttention))
    h = torch.randn(2, attn.qkv.in_channels, 2, 2).contiguous(memory_format=torch.channels_last)
    assert attn(h).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["unet_tiny", "dit_tiny"])
def test_noise_embedding_and_output_stay_fp32_under_bf16_autocast(name):
    model = _randomized(build_backbone(name, in_channels=4, resolution=8))
    embed = model.noise_embedding if name == "unet_tiny" else model.t_embedder
    c, x = torch.tensor([-1554.0, 1096.0, 0.5]), torch.randn(3, 4, 8, 8)
    ref = embed(c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb, out = embed(c), model(x, c)
    assert emb.dtype == torch.float32 and out.dtype == torch.float32
    torch.testing.assert_close(emb, ref, atol=0, rtol=0)  # not merely fp32-typed: computed in fp32
    assert torch.isfinite(out).all()
    # The bf16 body is close to the fp32 network (bf16 has ~3 significant digits).
    torch.testing.assert_close(out, model(x, c), atol=0.05 * model(x, c).abs().max().item(), rtol=0.05)


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_trains_under_bf16_autocast(norm):
    # Forward and backward (CPU autocast used to fail in NsLN's backward: bf16 input, fp32 bias).
    model = _randomized(build_backbone("unet_tiny", in_channels=4, resolution=8, norm=norm))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 4, 8, 8), torch.randn(2) * 500)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
