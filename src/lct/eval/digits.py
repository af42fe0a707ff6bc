"""Digit metrics for the built-in MNIST: a Fréchet distance on the shipped classifier's features ("digit
FID", the LeNet-FID of MNIST papers), legibility and class coverage.

The classifier (`python -m lct.digit_classifier`, shipped in src/lct/assets/digit_classifier) costs
milliseconds per batch on a CPU, so these run inside training; Inception FID stays the reported standard.
The reference statistics are those of the 500 held-out real digits, computed once and shipped beside the
weights.

Legibility alone can praise a collapsed model (every sample the same crisp 9 is 100% legible, coverage 0),
so it is never reported alone: `legible_balanced` counts a legible sample only up to its class's even
share (N/10 per digit), which needs both legibility and coverage (one class at most 0.1, an even legible
set 1.0), and every log line and table prints legibility beside coverage. `legible` and `coverage` keep
their meaning (logged as `digits/legible_*`, `digits/coverage_*`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import _compute_fid

from lct.errors import LctError

LEGIBLE_PROBABILITY = 0.9
# The shipped classifier's files (src/lct/assets/digit_classifier) and its input.
WEIGHTS, REFERENCE = "model.safetensors", "reference.safetensors"
NUM_CLASSES, IMAGE_SIZE = 10, 32


class DigitNet(nn.Module):
    """LeNet-5 on 1x32x32 digits in [-1, 1], wider convolutions (0.12M parameters); 84 features."""

    num_features = 84

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)  # 32 -> 28, pooled to 14
        self.conv2 = nn.Conv2d(16, 32, 5)  # 14 -> 10, pooled to 5
        self.fc1 = nn.Linear(32 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, self.num_features)
        self.head = nn.Linear(self.num_features, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) -> (B, 84) penultimate activations."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) -> (B, 10) logits."""
        return self.head(self.features(x))


def classifier_path() -> Path:
    """Folder of the shipped digit classifier."""
    return Path(str(resources.files("lct") / "assets" / "digit_classifier"))


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> tuple[DigitNet, dict[str, torch.Tensor]]:
    path = Path(folder)
    if not (path / WEIGHTS).is_file() or not (path / REFERENCE).is_file():
        raise LctError(
            f"no digit classifier in {path} ({WEIGHTS}, {REFERENCE}); train one with "
            f"`python -m lct.digit_classifier --out {path}`"
        )
    net = DigitNet()
    net.load_state_dict(load_file(str(path / WEIGHTS)))
    net.requires_grad_(False)
    return net.eval(), load_file(str(path / REFERENCE))


def load_classifier(folder: str | Path | None = None) -> tuple[DigitNet, dict[str, torch.Tensor]]:
    """(classifier in eval mode, reference stats {mu, sigma, count}); loaded once per process and folder.
    The network is shared: move a copy, not it, to another device (DigitScorer does)."""
    return _load(str(folder or classifier_path()))


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), computed as torchmetrics'
    FrechetInceptionDistance (lct.eval.metrics) computes it, in float64."""
    return float(_compute_fid(mu1.double(), sigma1.double(), mu2.double(), sigma2.double()))


def legibility(probs: torch.Tensor, threshold: float = LEGIBLE_PROBABILITY) -> float:
    """Fraction of samples whose most likely class has probability >= threshold."""
    return (probs.max(1).values >= threshold).double().mean().item()


def legible_balanced(probs: torch.Tensor, threshold: float = LEGIBLE_PROBABILITY) -> float:
    """Fraction of samples legible and within their predicted class's even share: sum over classes of
    min(legible in class, N / 10) / N. One digit alone scores at most 0.1, however legible."""
    legible = probs.max(1).values >= threshold
    per_class = torch.bincount(probs.argmax(1)[legible], minlength=NUM_CLASSES).double()
    return float(per_class.clamp(max=len(probs) / NUM_CLASSES).sum() / len(probs))


def coverage(probs: torch.Tensor) -> float:
    """Entropy of the predicted-label histogram / ln 10: 1 when every digit is predicted equally often."""
    counts = torch.bincount(probs.argmax(1), minlength=NUM_CLASSES).double()
    p = counts[counts > 0] / counts.sum()
    return float((p * p.reciprocal().log()).sum() / math.log(NUM_CLASSES))


class DigitScorer:
    """Features and class probabilities of decoded images, and the digit metrics against the reference."""

    def __init__(self, folder: str | Path | None = None, device: torch.device | str = "cpu"):
        net, ref = load_classifier(folder)
        self.device = torch.device(device)
        self.net = net if self.device.type == "cpu" else DigitNet().to(self.device).eval()
        if self.net is not net:
            self.net.load_state_dict(net.state_dict())
        self.mu, self.sigma, self.num_reference = ref["mu"], ref["sigma"], int(ref["count"])

    @torch.no_grad()
    def features_and_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 32, 32) images in [-1, 1] -> ((B, 84) penultimate features, (B, 10) probabilities), on CPU."""
        if images.ndim != 4 or images.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise LctError(
                f"the digit metric reads 1x{IMAGE_SIZE}x{IMAGE_SIZE} images (the built-in MNIST VAE's "
                f"output), got {tuple(images.shape[1:])}; use it only with data=mnist"
            )
        feats = self.net.features(images.to(self.device, torch.float32))
        return feats.cpu(), self.net.head(feats).softmax(1).cpu()

    def score(self, image_batches: Iterable[torch.Tensor]) -> dict[str, float]:
        """{fid, legible_balanced, legible, coverage, num_samples} of all images in the batches."""
        feats, probs = zip(*(self.features_and_probs(b) for b in image_batches))
        feats, probs = torch.cat(feats), torch.cat(probs)
        if len(feats) < 2:
            raise LctError(f"the digit metric needs at least 2 samples, got {len(feats)}")
        mu, sigma = gaussian_stats(feats)
        return {
            "fid": frechet_distance(mu, sigma, self.mu, self.sigma),
            "legible_balanced": legible_balanced(probs),
            "legible": legibility(probs),
            "coverage": coverage(probs),
            "num_samples": len(feats),
        }
