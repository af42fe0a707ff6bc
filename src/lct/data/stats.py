"""Dataset statistics of latents: per-element mu/s (the latent normalization, docs/method.md) and per-channel summaries."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class RunningMoments:
    """Streaming per-element mean and variance in float64 (Chan et al. pairwise merge of chunks),
    so a dataset larger than RAM needs one pass and no catastrophic cancellation."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, dtype=np.float64)
        n_b = len(chunk)
        if n_b == 0:
            return
        mean_b = chunk.mean(0)
        m2_b = ((chunk - mean_b) ** 2).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    def std(self) -> np.ndarray:
        """Unbiased std, as torch.std_mean in the authors' statistics script."""
        if self.n < 2:
            raise ValueError("need at least 2 latents for a standard deviation")
        return np.sqrt(self.m2 / (self.n - 1))


def channel_summary(chunks: Iterable[np.ndarray]) -> list[dict]:
    """Per-channel mean, std, min, max and excess kurtosis over all values of that channel.
    Raw power sums are taken about the first chunk's channel mean, which keeps float64 exact enough."""
    shift = sums = None
    count, lo, hi = 0, None, None
    for chunk in chunks:
        x = np.moveaxis(np.asarray(chunk, dtype=np.float64), 1, 0).reshape(chunk.shape[1], -1)
        if shift is None:
            shift = x.mean(1, keepdims=True)
            sums = np.zeros((x.shape[0], 4))
            lo, hi = x.min(1), x.max(1)
        d = x - shift
        sums += np.stack([(d**p).sum(1) for p in (1, 2, 3, 4)], 1)
        count += x.shape[1]
        lo, hi = np.minimum(lo, x.min(1)), np.maximum(hi, x.max(1))
    raw = sums / count  # E[d^p], d = x - shift
    mu = raw[:, 0]
    var = raw[:, 1] - mu**2
    m4 = raw[:, 3] - 4 * mu * raw[:, 2] + 6 * mu**2 * raw[:, 1] - 3 * mu**4
    kurt = m4 / np.maximum(var, 1e-300) ** 2 - 3.0
    mean = mu + shift[:, 0]
    return [
        {"channel": c, "mean": float(mean[c]), "std": float(np.sqrt(var[c])), "min": float(lo[c]),
         "max": float(hi[c]), "excess_kurtosis": float(kurt[c])}
        for c in range(len(mean))
    ]
