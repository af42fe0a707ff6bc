"""The backbones' optional second time input (c_extra, MeanFlow's t - r): weights saved before it existed load
and give the outputs recorded then; without it every backbone is bit-identical to the single-time network;
given, it changes the output and trains; the Backbone protocol's single-time example still runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lct.nn import Backbone, build_backbone

# Weights, inputs and outputs recorded by `_record` with the backbone code of commit 5c4db65, the last one
# before the second time input (small sizes keep the file at ~0.3 MB).
FIXTURE = Path(__file__).parent / "data" / "backbones_single_time.safetensors"
SMALL = {
    "unet_tiny": {"model_channels": 8, "channel_mult": (1, 2), "num_blocks": 1, "norm": "nsln"},
    "dit_tiny": {"hidden_size": 16, "depth": 1},
}


def _build(name: str, seed: int = 0, **kw) -> Backbone:
    torch.manual_seed(seed)
    return build_backbone(name, in_channels=4, resolution=8, **{**SMALL[name], **kw})


def _randomize(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    # Zero-initialized output layers make F = 0 exactly; perturb every weight so outputs carry signal.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _record(path: Path = FIXTURE) -> None:
    """Write the fixture (run once with the single-time code on the path; kept to document the file)."""
    tensors = {
        "x": torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2)),
        "c": torch.tensor([-900.0, 0.0, 700.0]),
    }
    for name in SMALL:
        model = _randomize(_build(name)).eval()
        tensors |= {f"{name}.{k}": v.contiguous() for k, v in model.state_dict().items()}
        with torch.no_grad():
            tensors[f"out.{name}"] = model(tensors["x"], tensors["c"])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


@pytest.mark.parametrize("name", list(SMALL))
def test_weights_saved_before_the_second_time_input_load_and_give_the_recorded_outputs(name):
    saved = load_file(str(FIXTURE))
    state = {k[len(name) + 1 :]: v for k, v in saved.items() if k.startswith(f"{name}.")}
    model = _build(name).eval()
    model.load_state_dict(state, strict=True)  # unchanged keys and shapes
    with torch.no_grad():
        out = model(saved["x"], saved["c"])
    torch.testing.assert_close(out, saved[f"out.{name}"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_default_backbone_has_no_second_embedding(name):
    single, double = _build(name), _build(name, extra_time=True)
    extra = set(double.state_dict()) - set(single.state_dict())
    assert extra and all(k.startswith(("map_extra", "extra_embedder")) for k in extra)
    # Built last: every shared layer starts as in the single-time network of the same seed.
    assert all(torch.equal(v, double.state_dict()[k]) for k, v in single.state_dict().items())


@pytest.mark.parametrize("name", list(SMALL))
def test_without_c_extra_the_output_is_bit_identical(name):
    single = _randomize(_build(name)).eval()
    double = _randomize(_build(name, extra_time=True), seed=3).eval()
    double.load_state_dict(single.state_dict(), strict=False)  # shared weights equal; the extra one random
    x, c = torch.randn(3, 4, 8, 8), torch.tensor([-1554.0, 10.0, 1096.0])
    with torch.no_grad():
        ref = single(x, c)
        assert torch.equal(double(x, c), ref)
        assert torch.equal(double(x, c, None), ref)
        assert torch.equal(single(x, c, c_extra=None), ref)


@pytest.mark.parametrize("name", list(SMALL))
def test_c_extra_changes_the_output_and_its_embedding_trains(name):
    model = _randomize(_build(name, extra_time=True))
    x, c = torch.randn(2, 4, 8, 8), torch.tensor([300.0, 800.0])
    out0, out1, out2 = model(x, c), model(x, c, torch.tensor([0.0, 0.0])), model(x, c, torch.tensor([250.0, 500.0]))
    assert not torch.allclose(out0, out1) and not torch.allclose(out1, out2)
    out2.square().sum().backward()
    extra = [p for n, p in model.named_parameters() if n.startswith(("map_extra", "extra_embedder"))]
    assert extra and all(p.grad is not None and p.grad.abs().sum() > 0 for p in extra)
    scalar = model(x, c, 250.0)  # a scalar label broadcasts like c_noise
    torch.testing.assert_close(scalar, model(x, c, torch.full((2,), 250.0)))


@pytest.mark.parametrize("name", list(SMALL))
def test_c_extra_without_its_embedding_is_refused_with_the_fix(name):
    model = _build(name)
    with pytest.raises(ValueError, match="extra_time=True"):
        model(torch.randn(2, 4, 8, 8), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="c_extra has 3 values"):
        _build(name, extra_time=True)(torch.randn(2, 4, 8, 8), torch.zeros(2), torch.zeros(3))


def test_a_single_time_backbone_as_in_the_architecture_docs_still_runs():
    class ConvNet(Backbone):  # docs/architecture.md's example: forward(x, c_noise) only
        def __init__(self, in_channels: int, width: int = 8):
            super().__init__()
            self.inp = torch.nn.Conv2d(in_channels, width, 3, padding=1)
            self.emb = torch.nn.Linear(1, width)
            self.out = torch.nn.Conv2d(width, in_channels, 3, padding=1)

        def forward(self, x, c_noise):
            h = self.inp(x) + self.emb(c_noise[:, None].to(x) / 1000)[:, :, None, None]
            return self.out(torch.nn.functional.silu(h))

    x = torch.randn(2, 4, 8, 8)
    assert ConvNet(4)(x, torch.zeros(2)).shape == x.shape
    with pytest.raises(NotImplementedError, match="forward"):
        Backbone()(x, torch.zeros(2))


def test_float64_time_labels_are_embedded_in_float64():
    # A float64 network differentiates its time input to float64 precision (the MeanFlow JVP checks).
    model = _randomize(_build("unet_tiny", extra_time=True)).double()
    x, c, e = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.tensor([100.0, 400.0], dtype=torch.float64), 1e-7
    dc = torch.tensor([1.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        slope = (model(x, c + e * dc, c) - model(x, c - e * dc, c)) / (2 * e)
        slope2 = (model(x, c + 2 * e * dc, c) - model(x, c - 2 * e * dc, c)) / (4 * e)
    assert slope.abs().max() > 1e-4
    torch.testing.assert_close(slope, slope2, atol=1e-6 * slope.abs().max().item(), rtol=1e-5)
