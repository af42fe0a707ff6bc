"""ADM UNet: shapes, zero output at init, norm axis, NsLN's frozen scale, input validation."""

import pytest
import torch

from lct.core.time_embedding import sinusoidal_embedding
from lct.nn import NORMS, ADMUNet, NonScalingLayerNorm, build_backbone, trainable_parameters


def _tiny(**kw):
    kw = {"in_channels": 4, "resolution": 8, **kw}
    return build_backbone("unet_tiny", **kw)


def _randomize_outputs(model):
    # Zero-initialized output convs make F = 0 exactly; perturb them so shape tests see real signal.
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))


@pytest.mark.parametrize("channels,resolution", [(4, 8), (4, 16), (3, 12), (8, 4), (1, 20)])
def test_output_shape_matches_input(channels, resolution):
    model = _tiny(in_channels=channels, resolution=resolution)
    _randomize_outputs(model)
    x = torch.randn(2, channels, resolution, resolution)
    out = model(x, torch.tensor([-1554.0, 1096.0]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_runs_and_starts_at_zero(norm):
    model = _tiny(norm=norm)
    x = torch.randn(3, 4, 8, 8)
    out = model(x, torch.randn(3) * 500)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # out_conv, conv1 and attention proj are zero-initialized


@pytest.mark.parametrize("batch", [1, 5])
def test_batch_one_and_odd(batch):
    model = _tiny(norm="nsln")
    _randomize_outputs(model)
    x = torch.randn(batch, 4, 8, 8)
    out = model(x, torch.full((batch,), 250.0))
    out.square().mean().backward()
    assert out.shape == x.shape
    scalar = model(x, 250.0)  # a scalar c_noise broadcasts over the batch
    assert torch.allclose(scalar, out, atol=1e-6)


def test_nsln_scale_frozen_at_one_after_optimizer_step():
    model = _tiny(norm="nsln")
    norms = [m for m in model.modules() if isinstance(m, NonScalingLayerNorm)]
    assert norms and all(not n.weight.requires_grad for n in norms)
    opt = torch.optim.RAdam(trainable_parameters(model), lr=1e-2, weight_decay=1e-4)
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(n.weight) not in params and id(n.bias) in params for n in norms)
    _randomize_outputs(model)
    model(torch.randn(4, 4, 8, 8), torch.randn(4) * 500).square().mean().backward()
    opt.step()
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms)
    assert any(n.bias.abs().sum() > 0 for n in norms)  # the bias does learn


def test_nsln_scale_stays_one_even_if_unfrozen():
    # Trainers often call requires_grad_(True) on a whole model; the scale must still not move.
    model = _tiny(norm="nsln")
    _randomize_outputs(model)
    model.requires_grad_(True)
    opt = torch.optim.RAdam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    model(torch.randn(4, 4, 8, 8), torch.randn(4) * 500).square().mean().backward()
    opt.step()
    weights = [m.weight for m in model.modules() if isinstance(m, NonScalingLayerNorm)]
    assert all(w.grad is None and torch.equal(w, torch.ones_like(w)) for w in weights)


def test_layer_norms_follow_the_tensor_size():
    # A down block's norm0 sees the input before downsampling; an up block's sees it before upsampling.
    model = _tiny(norm="nsln", resolution=16)
    down = [b for b in model.enc if getattr(b, "resample_mode", None) == "down"][0]
    up = [b for b in model.dec if b.resample_mode == "up"][0]
    assert down.norm0.normalized_shape[1:] == (16, 16) and down.norm1.normalized_shape[1:] == (8, 8)
    assert up.norm0.normalized_shape[1:] == (4, 4) and up.norm1.normalized_shape[1:] == (8, 8)


def test_noise_embedding_stays_fp32_under_autocast():
    c = torch.tensor([-1554.0, 1096.0, 0.5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = sinusoidal_embedding(c, 128)
    assert emb.dtype == torch.float32
    assert torch.allclose(emb[:, 0], torch.cos(c)) and torch.allclose(emb[:, 64], torch.sin(c))


def test_bf16_autocast_forward():
    model = _tiny(norm="nsln")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 4, 8, 8), torch.randn(2))
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()


def test_bad_resolution_names_the_sizes_that_work():
    with pytest.raises(ValueError, match="multiple of 4 .*8, 12, 16"):
        _tiny(resolution=10)
    with pytest.raises(ValueError, match="multiple of 8"):
        ADMUNet(in_channels=4, resolution=36)


def test_bad_norm_and_channels():
    with pytest.raises(ValueError, match="nsln"):
        _tiny(norm="batchnorm")
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 4, 8, 8\).*in_channels=3"):
        model(torch.randn(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="c_noise has 3 values"):
        model(torch.randn(2, 4, 8, 8), torch.zeros(3))
