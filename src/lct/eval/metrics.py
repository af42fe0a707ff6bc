"""FID, KID and precision/recall on one set of Inception features (torchmetrics does the statistics).

Features are extracted once per image; because the extractors pass (B, 2048) features through
unchanged, the same tensor is fed to each metric's own `update()`. The real side is seeded from cached
reference statistics (see reference.py) instead of being re-extracted.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .inception import NUM_FEATURES, build_extractor
from .precision_recall import DEFAULT_K, PrecisionRecall

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torchmetrics' and the KID paper's defaults


def _dist_info() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _global_sum(value: int, device: torch.device) -> int:
    """Sum an integer over DDP ranks (every rank must call this)."""
    t = torch.tensor(int(value), device=device)
    if _dist_info()[1] > 1:
        torch.distributed.all_reduce(t)
    return int(t)


class GenerativeMetrics(nn.Module):
    """FID + KID + improved precision/recall (k=3) of generated images against a real reference.

    Update on every DDP rank with that rank's share of the samples; compute() on every rank too
    (torchmetrics synchronises the states there; computing on rank 0 alone hangs).
    """

    def __init__(
        self,
        extractor: nn.Module | None = None,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        k: int = DEFAULT_K,
        seed: int = 0,
        inception_path: str | None = None,
        resize_mode: str = "tf1_bilinear",
    ):
        super().__init__()
        self.extractor = extractor if extractor is not None else build_extractor(inception_path, resize_mode)
        # sync_on_compute stays on: states are gathered/summed over ranks inside compute().
        self.fid = FrechetInceptionDistance(feature=self.extractor, reset_real_features=False)
        with warnings.catch_warnings():  # "KID saves all features": yes, bounded by the sample count
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.kid = KernelInceptionDistance(
                feature=self.extractor, subsets=kid_subsets, subset_size=kid_subset_size, reset_real_features=False
            )
        self.pr = PrecisionRecall(k=k)
        self.kid_subset_size, self.seed = int(kid_subset_size), int(seed)

    @property
    def extractor_id(self) -> str:
        return self.extractor.extractor_id

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) images (float in [-1,1] or uint8) -> (B, 2048) Inception pool3 features."""
        return self.extractor(images.to(self.fid.device))

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool = False) -> torch.Tensor:
        """Extract features once and feed every metric; returns the features."""
        feats = self.features(images)
        self.update_features(feats, real)
        return feats

    def update_features(self, feats: torch.Tensor, real: bool = False) -> None:
        feats = feats.to(self.fid.device).float()
        self.fid.update(feats, real=real)
        self.kid.update(feats, real=real)
        self.pr.update(feats, real=real)

    def set_reference(self, reference, rank: int | None = None, world_size: int | None = None) -> None:
        """Seed the real side from a ReferenceStats: FID sums on rank 0 only (they are summed over
        ranks on compute), the real features for KID/recall split across ranks (they are gathered)."""
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        rank, world_size = _dist_info() if rank is None else (rank, world_size)
        n, dev = reference.count, self.fid.device
        mu, sigma = reference.mu.to(dev, torch.float64), reference.sigma.to(dev, torch.float64)
        own = rank == 0
        # FID keeps sum(f) and sum(f f^T); rebuild them from mu and the unbiased covariance.
        self.fid.real_features_sum = mu * n if own else torch.zeros_like(mu)
        self.fid.real_features_cov_sum = (sigma * (n - 1) + n * torch.outer(mu, mu)) if own else torch.zeros_like(sigma)
        self.fid.real_features_num_samples = torch.tensor(n if own else 0, device=dev)
        share = reference.features[rank::world_size].to(dev).float()
        self.kid.real_features, self.pr.real_features = [share], [share]

    def reset_fake(self) -> None:
        """Drop the generated side, keep the reference (FID/KID have reset_real_features=False)."""
        self.fid.reset()
        self.kid.reset()
        self.pr.fake_features = []
        self.pr._computed = None  # PrecisionRecall keeps the real list; only its cached result goes

    def compute(self) -> dict[str, float]:
        """All metrics as floats, plus the sample counts and the extractor/resize they were computed with."""
        dev = self.fid.device
        n_fake = _global_sum(self.fid.fake_features_num_samples, dev)
        n_real = _global_sum(self.fid.real_features_num_samples, dev)
        dims = int(getattr(self.extractor, "num_features", NUM_FEATURES))
        if n_fake < dims:
            warnings.warn(
                f"FID from {n_fake} generated samples (< {dims} feature dimensions): the "
                "covariance is rank-deficient and the estimate is biased upward; compare only runs "
                "with the same sample count",
                stacklevel=2,
            )
        out = {"fid": float(self.fid.compute())}
        n_kid_real = _global_sum(sum(f.shape[0] for f in self.kid.real_features), dev)
        self.kid.subset_size = max(2, min(self.kid_subset_size, n_fake, n_kid_real))
        with torch.random.fork_rng(devices=[]):  # KID draws random subsets: fixed seed, same on all ranks
            torch.manual_seed(self.seed)
            kid_mean, kid_std = self.kid.compute()
        out.update(kid=float(kid_mean), kid_std=float(kid_std))
        out.update({k: float(v) for k, v in self.pr.compute().items()})
        out.update(
            num_fake=n_fake,
            num_real=n_real,
            kid_subset_size=self.kid.subset_size,
            extractor=self.extractor_id,
            resize=self.extractor.resize_mode,
        )
        return out
