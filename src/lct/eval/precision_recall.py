"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN manifold estimates in feature space.

Each set's manifold is the union of balls around its points, the radius of each ball being the distance
to that point's k-th nearest neighbour within its own set (k = 3 as in the paper). Precision = share of
generated points inside the real manifold; recall = share of real points inside the generated one.
The authors of sLCT computed these on StyleGAN's VGG16 features; we use the FID Inception features,
so compare recall across our runs, not digit-for-digit with the paper's table.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from lct.errors import LctError

DEFAULT_K = 3
# Row block of the pairwise-distance matrix: 1024 x 50k floats is ~200 MB, bounded for the 50k protocol.
ROW_CHUNK = 1024


def check_precision_recall_counts(n: int, what: str, k: int = DEFAULT_K) -> None:
    """LctError unless n > k: each point's radius is the distance to its k-th nearest other point of its set."""
    if n <= k:
        raise LctError(
            f"{what}: {n} images are too few for precision and recall (their k = {k} nearest neighbours need at "
            f"least {k + 1} per set): score {k + 1} or more samples against {k + 1} or more reference images, or "
            "use --metrics digit alone for a smoke test"
        )


def knn_radii(feats: torch.Tensor, k: int = DEFAULT_K, chunk: int = ROW_CHUNK) -> torch.Tensor:
    """(N,) distance of each row to its k-th nearest other row (the point itself, at 0, is skipped)."""
    n = feats.shape[0]
    check_precision_recall_counts(n, "a feature set", k)
    radii = [torch.cdist(block, feats).kthvalue(k + 1, dim=1).values for block in feats.split(chunk)]
    return torch.cat(radii)


def coverage(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = ROW_CHUNK) -> torch.Tensor:
    """Share of query rows within radii[j] of at least one support row j."""
    inside = [(torch.cdist(block, support) <= radii[None, :]).any(dim=1) for block in query.split(chunk)]
    return torch.cat(inside).double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = DEFAULT_K) -> tuple[torch.Tensor, torch.Tensor]:
    """(precision, recall) of fake features against real features, both (N, D)."""
    check_precision_recall_counts(len(real), "the reference images", k)
    check_precision_recall_counts(len(fake), "the samples", k)
    real, fake = real.double(), fake.double()  # float64: ties at distance 0 (identical sets) stay exact
    precision = coverage(fake, real, knn_radii(real, k))
    recall = coverage(real, fake, knn_radii(fake, k))
    return precision, recall


class PrecisionRecall(Metric):
    """torchmetrics wrapper over precision_recall; feature lists are gathered across DDP ranks on compute."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int = DEFAULT_K, **kwargs):
        super().__init__(**kwargs)
        self.k = int(k)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, real: bool) -> None:
        (self.real_features if real else self.fake_features).append(features.detach().float())

    def compute(self) -> dict[str, torch.Tensor]:
        real, fake = (torch.cat(f) if isinstance(f, list) else f for f in (self.real_features, self.fake_features))
        precision, recall = precision_recall(real, fake, self.k)
        return {"precision": precision.float(), "recall": recall.float()}
