"""Seeded generation of image batches at a given list of sigmas (1 NFE: [sigma_max]; 2 NFE: [sigma_max, sigma_mid]).

The initial noise is drawn per sample from its own seed, so a 1-NFE sample is the same image whatever
the batch size or the number of DDP ranks. The re-noising draws of multi-step sampling come from the
global RNG, forked and seeded per batch (the model's `generate` takes no generator), so multi-step
samples are reproducible for the same seeds, batch size and world size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch


def seeded_noise(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """(len(seeds), *shape) unit Gaussian noise, row i drawn from a CPU generator seeded with seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows)


def rank_seeds(seed: int, num_samples: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's slice of the seeds seed, seed+1, ..., seed+num_samples-1 (interleaved)."""
    return list(range(seed, seed + num_samples))[rank::world_size]


@torch.no_grad()
def seeded_batches(
    sample_fn: Callable[[torch.Tensor, list[float]], torch.Tensor],
    seeds: Sequence[int],
    latent_shape: Sequence[int],
    sigmas: Sequence[float],
    batch_size: int,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor | None]]:
    """Yield (seeds, latents x0, decoded images or None) per batch; sample_fn(noise, sigmas) -> x0."""
    device = torch.device(device)
    sigmas = [float(s) for s in sigmas]
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start : start + batch_size])
        noise = seeded_noise(chunk, latent_shape).to(device)
        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(chunk[0] + 1_000_003)  # re-noising draws: a function of the batch's seeds
            x0 = sample_fn(noise, sigmas)
        images = decode(x0).float().clamp(-1, 1) if decode is not None else None
        yield chunk, x0, images
