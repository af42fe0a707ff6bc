"""Samples of a checkpoint as files: one PNG per sample (named by its seed), samples.npz (uint8 images NHWC,
seeds, sigmas, latents), grid.png and samples.json (behind `python -m lct.sample`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lct.errors import LctError
from lct.eval.grid import image_grid, save_png
from lct.eval.inception import to_uint8
from lct.eval.sampling import seeded_batches


def selected_weights(no_ema: bool, ema_decay: float | None) -> bool | float:
    """load_bundle's `ema` from --no-ema / --ema-decay: False (the student), True (the first EMA) or a decay."""
    if no_ema and ema_decay is not None:
        raise LctError("--no-ema and --ema-decay name different weights; pass one of them")
    return False if no_ema else (ema_decay if ema_decay is not None else True)


def resolve_sigma_mid(noise, sigma_mid: float | None = None, index: int | None = None) -> float:
    """`sigma_mid`, else the `index`-th point of the checkpoint's sigma_mid grid, else the checkpoint's sigma_mid."""
    if sigma_mid is not None:
        return sigma_mid
    if index is not None:
        return noise.grid_sigma(index, noise.mid_grid)
    return noise.sigma_mid


def write_samples(
    bundle, checkpoint, seeds: list[int], sigmas, out: Path, batch_size: int, device, png: bool = True, grid: int = 64
) -> Path:
    """Sample i from the noise of seeds[i] at `sigmas` and write the files into `out` (`grid` samples in grid.png)."""
    (out / "png").mkdir(parents=True, exist_ok=True)
    images, latents = [], []
    for chunk, x0, imgs in seeded_batches(
        bundle.sample, seeds, bundle.latent_shape, sigmas, batch_size, bundle.codec.decode, device
    ):
        u8 = to_uint8(imgs.cpu()).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
        if png:
            for s, img in zip(chunk, u8):
                save_png(img, out / "png" / f"{s:06d}.png")
        images.append(u8)
        latents.append(x0.cpu().numpy())
    images = np.concatenate(images)
    np.savez(
        out / "samples.npz",
        images=images,
        seeds=np.array(seeds),
        sigmas=np.array(sigmas),
        latents=np.concatenate(latents),
    )
    grid = torch.from_numpy(images[:grid]).permute(0, 3, 1, 2)
    save_png(image_grid(grid), out / "grid.png")
    meta = {
        "checkpoint": str(checkpoint),
        "kind": bundle.kind,
        "weights": bundle.weights,
        "sigmas": sigmas,
        "seeds": [seeds[0], seeds[-1]],
        "num_samples": len(seeds),
    }
    (out / "samples.json").write_text(json.dumps(meta, indent=2))
    return out
