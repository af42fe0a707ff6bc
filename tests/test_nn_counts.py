"""Parameter counts of the paper-size backbones (a difference means an architectural difference)."""

import pytest
import torch

from lct.nn import NonScalingLayerNorm, build_backbone


def _counts(model):
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_paper_unet_groupnorm_count():
    # EDM's DhariwalUNet on a 4x32x32 latent; built for real on CPU.
    assert _counts(build_backbone("unet_paper", in_channels=4, resolution=32)) == (151_325_956, 151_325_956)


def test_paper_unet_nsln_count():
    model = build_backbone("unet_paper", in_channels=4, resolution=32, norm="nsln")
    assert _counts(model) == (165_468_676, 158_355_972)
    frozen = [m.weight for m in model.modules() if isinstance(m, NonScalingLayerNorm)]
    # norm0 + norm1 of 44 blocks (19 encoder, 25 decoder), 19 attention norms, the output norm
    assert len(frozen) == 2 * 44 + 19 + 1
    assert all(torch.equal(w, torch.ones_like(w)) for w in frozen)


@pytest.mark.parametrize(
    "norm,counts",
    [
        ("instancenorm", (151_325_956, 151_325_956)),
        ("layernorm", (165_468_676, 165_468_676)),
        ("rmsnorm", (158_355_972, 158_355_972)),
    ],
)
def test_paper_unet_other_norms(norm, counts):
    with torch.device("meta"):
        assert _counts(build_backbone("unet_paper", norm=norm)) == counts


@pytest.mark.parametrize(
    "name,total",
    [
        ("dit_S_2", 32_474_512),
        ("dit_B_2", 129_534_736),
        ("dit_L_2", 456_799_248),
        ("dit_XL_2", 673_663_120),
        ("dit_B_4", 129_608_512),
        ("dit_B_1", 129_516_292),
    ],
)
def test_dit_counts(name, total):
    # Unconditional, out channels = in channels, no learned-sigma head: the DiT paper's sizes less the
    # class table (XL/2: 675M there) -- all parameters trainable, positions are a buffer.
    with torch.device("meta"):
        assert _counts(build_backbone(name, in_channels=4, resolution=32)) == (total, total)


def test_tiny_sizes():
    assert _counts(build_backbone("unet_tiny"))[0] == 1_923_332
    assert _counts(build_backbone("dit_tiny"))[0] == 1_867_664
