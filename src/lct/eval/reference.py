"""Reference (real-data) Inception statistics: computed once, cached with provenance, never used stale.

A cache holds the features (for KID and recall) and their mean/covariance (for FID), plus what they
were computed from: dataset id, requested and actual count, source (decoded latents or images),
extractor id (includes the weights' SHA-1) and resize mode. A cache whose provenance differs from what
the caller expects is recomputed (or, with on_mismatch="error", refused) — never silently used.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lct.errors import LctError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Keys that must match for a cache to be reused ("count" is the actual number, which may be lower
# than "requested" when the dataset is small, so it is recorded but not compared).
PROVENANCE_KEYS = ("format", "dataset", "source", "requested", "extractor", "resize")


class StaleReferenceError(LctError, RuntimeError):
    """A reference cache exists but was computed from something else."""


@dataclass
class ReferenceStats:
    """Real-side Inception statistics: features (N, D) float32, mu (D,) and sigma (D, D) float64."""

    features: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    provenance: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    @classmethod
    def from_features(cls, features: torch.Tensor, provenance: dict) -> ReferenceStats:
        if features.shape[0] < 2:
            raise ValueError(f"need at least 2 reference images, got {features.shape[0]}")
        f = features.detach().cpu().double()
        mu = f.mean(dim=0)
        sigma = torch.cov(f.T)  # unbiased (N-1), as torchmetrics and pytorch-fid
        return cls(features.detach().cpu().float(), mu, sigma, {**provenance, "count": int(f.shape[0])})


def make_provenance(dataset: str, requested: int, extractor, source: str) -> dict:
    """What a reference cache must have been computed from to be reused."""
    return {
        "format": CACHE_FORMAT,
        "dataset": str(dataset),
        "source": str(source),
        "requested": int(requested),
        "extractor": extractor.extractor_id,
        "resize": extractor.resize_mode,
    }


def provenance_mismatch(found: dict, expected: dict) -> list[str]:
    """Human-readable differences on the compared keys ([] when the cache is valid)."""
    return [
        f"{k}: cached {found.get(k)!r} != expected {expected.get(k)!r}"
        for k in PROVENANCE_KEYS
        if found.get(k) != expected.get(k)
    ]


def save_reference(path: str | Path, ref: ReferenceStats) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")  # atomic: a killed run never leaves half a cache
    torch.save({"features": ref.features, "mu": ref.mu, "sigma": ref.sigma, "provenance": ref.provenance}, tmp)
    tmp.replace(path)


def load_reference(path: str | Path) -> ReferenceStats:
    """A cache written by save_reference; tensors only are unpickled (a crafted file runs no code)."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return ReferenceStats(d["features"], d["mu"], d["sigma"], dict(d["provenance"]))
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError) as err:
        raise LctError(
            f"{path} is not a reference statistics cache written by lct ({why_unreadable(err)}); nothing in it "
            "was run. Pass another --reference path, or delete the file if it is yours to recompute it"
        ) from None


def why_unreadable(err: BaseException) -> str:
    """The part of a load error worth one line: the Python object a crafted pickle names, else the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    unsafe = [line for line in lines if "GLOBAL" in line or "allow_pickle" in line]
    if unsafe:
        return f"it holds Python objects that could run code when unpickled: {unsafe[0][:160]}"
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def load_or_compute_reference(
    path: str | Path | None, expected: dict, compute: Callable[[], torch.Tensor], on_mismatch: str = "recompute"
) -> ReferenceStats:
    """Reuse the cache at `path` if its provenance matches `expected`, else compute features and cache them."""
    if on_mismatch not in ("recompute", "error"):
        raise ValueError(f"on_mismatch must be 'recompute' or 'error', got {on_mismatch!r}")
    if path is not None and Path(path).is_file():
        ref = load_reference(path)
        diffs = provenance_mismatch(ref.provenance, expected)
        if not diffs:
            return ref
        msg = f"reference statistics {path} are stale: " + "; ".join(diffs)
        if on_mismatch == "error":
            raise StaleReferenceError(msg + " (delete the file or pass a matching setup)")
        log.warning("%s; recomputing", msg)
    ref = ReferenceStats.from_features(compute(), expected)
    if path is not None:
        save_reference(path, ref)
    return ref


# ----------------------------------------------------------------------------
# Image sources for the real side.


@torch.no_grad()
def extract_features(
    extractor,
    image_batches: Iterable[torch.Tensor],
    limit: int | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Concatenated (N, D) features of up to `limit` images from an iterable of image batches."""
    from tqdm.auto import tqdm

    feats, n = [], 0
    bar = tqdm(total=limit, desc="reference features", unit="img", disable=not progress)
    for images in image_batches:
        if limit is not None:
            images = images[: limit - n]
        feats.append(extractor(images.to(device)).cpu())
        n += images.shape[0]
        bar.update(images.shape[0])
        if limit is not None and n >= limit:
            break
    bar.close()
    if not feats:
        raise LctError("the reference image source yielded no images; give a source that holds images")
    return torch.cat(feats)


def batch_tensor(batch) -> torch.Tensor:
    """The data tensor of a dataloader batch: a tensor, the first item of a tuple/list, or batch['x0']."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch["x0"] if "x0" in batch else next(iter(batch.values()))
    return batch[0]


@torch.no_grad()
def decoded_batches(latent_batches: Iterable, codec, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Images in [-1, 1] decoded from batches of normalized latents x0 with codec.decode."""
    for batch in latent_batches:
        yield codec.decode(batch_tensor(batch).to(device)).float().cpu()


def tensor_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of an in-memory image tensor (B, C, H, W), uint8 or float in [-1, 1]."""
    yield from images.split(batch_size)


def read_reference_images(path) -> torch.Tensor:
    """--reference-images through lct.eval.protocol.load_images; an unreadable or crafted file is one line."""
    from .protocol import load_images

    try:
        return load_images(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, ValueError) as err:
        raise LctError(
            f"--reference-images {path} cannot be read as images ({why_unreadable(err)}); nothing in it was run. "
            "Pass a folder of PNG/JPG, or an .npz/.npy/.pt of uint8 or [-1, 1] images"
        ) from None
