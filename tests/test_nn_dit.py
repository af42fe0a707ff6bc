"""DiT: shapes, adaLN-Zero start, fixed positions, input validation, the named-size registry."""

import pytest
import torch

from lct.nn import BACKBONES, DiT, build_backbone, dit_tiny


def _randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))


@pytest.mark.parametrize("channels,resolution,patch", [(4, 8, 2), (4, 16, 2), (3, 12, 4), (8, 8, 1), (1, 6, 2)])
def test_output_shape_matches_input(channels, resolution, patch):
    model = dit_tiny(in_channels=channels, resolution=resolution, patch_size=patch)
    _randomize(model)
    x = torch.randn(2, channels, resolution, resolution)
    out = model(x, torch.tensor([-1554.0, 1096.0]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "nsln"])
def test_starts_at_zero(norm):
    model = dit_tiny(norm=norm, qk_norm=True)
    out = model(torch.randn(3, 4, 8, 8), torch.randn(3) * 500)
    assert out.shape == (3, 4, 8, 8) and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("batch", [1, 7])
def test_batch_one_and_odd(batch):
    model = dit_tiny()
    _randomize(model)
    x = torch.randn(batch, 4, 8, 8)
    out = model(x, torch.full((batch,), -300.0))
    out.square().mean().backward()
    assert out.shape == x.shape


def test_unpatchify_inverts_patch_layout():
    # With identity-like maps the output must put every patch value back where it came from.
    model = DiT(in_channels=2, resolution=4, patch_size=2, hidden_size=8, depth=0, num_heads=2)
    with torch.no_grad():
        model.x_embedder.weight.zero_()
        model.final.linear.weight.zero_()
        model.final.linear.bias.copy_(torch.arange(8.0))  # token value = (py, px, c) index
    out = model(torch.zeros(1, 2, 4, 4), torch.zeros(1))
    expect = torch.arange(8.0).reshape(2, 2, 2).permute(2, 0, 1).repeat(1, 2, 2)  # (C, H, W)
    assert torch.equal(out[0], expect)


def test_positions_are_a_fixed_buffer():
    model = dit_tiny()
    assert "pos_embed" in dict(model.named_buffers())
    assert all("pos_embed" not in n for n, _ in model.named_parameters())
    assert model.pos_embed.shape == (1, 16, 128)


def test_bad_sizes():
    with pytest.raises(ValueError, match="divisible by 4 .*4, 8, 12"):
        build_backbone("dit_S_4", resolution=10)
    with pytest.raises(ValueError, match="layernorm, rmsnorm, nsln"):
        dit_tiny(norm="groupnorm")
    with pytest.raises(ValueError, match=r"in_channels=3"):
        dit_tiny()(torch.randn(1, 3, 8, 8), torch.zeros(1))


def test_registry_names():
    for size in ("S", "B", "L", "XL"):
        for patch in (1, 2, 4):
            assert f"dit_{size}_{patch}" in BACKBONES
    with pytest.raises(ValueError, match="registered"):
        build_backbone("dit_M_2")
