"""Generate images from a checkpoint (EMA weights by default) at 1 or 2 NFE or a given list of sigmas;
a diffusion (experiment=edm) checkpoint at any odd NFE with Heun's sampler (NFE = 2 steps - 1).

    python -m lct.sample CKPT --num-samples 64 --nfe 2 --out samples/
    python -m lct.sample EDM_CKPT --nfe 35 --out samples/

Writes one PNG per sample (named by its seed), samples.npz (uint8 images NHWC, seeds, sigmas, latents)
and grid.png. Sample i starts from the noise of seed + i (a 1-NFE sample is reproducible on its own;
multi-step samples for the same seeds and --batch-size).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lct.cli import run_cli
from lct.errors import LctError
from lct.eval.bundle import load_bundle
from lct.eval.grid import image_grid, save_png
from lct.eval.inception import to_uint8
from lct.eval.sampling import generate


def add_sigma_args(p: argparse.ArgumentParser) -> None:
    """The sigma options shared by lct.sample and lct.evaluate."""
    p.add_argument("--sigma-mid", type=float, default=None, help="2-NFE intermediate sigma (overrides the index)")
    p.add_argument(
        "--sigma-mid-index",
        type=int,
        default=None,
        help="index of sigma_mid on the checkpoint's mid_grid-point Karras grid (default: the "
        "checkpoint's method.sigma: index 430 of 641, the paper's best 420-440)",
    )
    p.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
    p.add_argument(
        "--ema-decay",
        type=float,
        default=None,
        help="sample the EMA with this decay (one of the run's ema.decays; default: the first)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--batch-size", type=int, default=64)


def selected_weights(args) -> bool | float:
    """load_bundle's `ema` from --no-ema / --ema-decay: False (the student), True (the first EMA) or a decay."""
    if args.no_ema and args.ema_decay is not None:
        raise LctError("--no-ema and --ema-decay name different weights; pass one of them")
    return False if args.no_ema else (args.ema_decay if args.ema_decay is not None else True)


def resolve_sigma_mid(args, noise) -> float:
    """--sigma-mid, else --sigma-mid-index on the checkpoint's grid, else the checkpoint's sigma_mid."""
    if args.sigma_mid is not None:
        return args.sigma_mid
    if args.sigma_mid_index is not None:
        return noise.grid_sigma(args.sigma_mid_index, noise.mid_grid)
    return noise.sigma_mid


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument(
        "--nfe",
        type=int,
        default=1,
        help="1 or 2 for a consistency checkpoint; any odd number for a diffusion checkpoint (Heun)",
    )
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=None,
        help="explicit descending sigma list (overrides --nfe; consistency checkpoints)",
    )
    p.add_argument("--out", default="samples")
    p.add_argument("--no-png", action="store_true", help="skip the per-sample PNGs (npz and grid only)")
    p.add_argument("--grid-size", type=int, default=64, help="samples shown in grid.png")
    add_sigma_args(p)
    return p.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    bundle = load_bundle(args.checkpoint, ema=selected_weights(args), device=args.device)
    if args.sigmas and bundle.kind == "diffusion":
        raise LctError(
            f"--sigmas is for consistency checkpoints; {args.checkpoint} is a diffusion (EDM) checkpoint: "
            "choose the Heun steps with --nfe (an odd number, NFE = 2 steps - 1)"
        )
    sigmas = args.sigmas or bundle.nfe_sigmas(args.nfe, resolve_sigma_mid(args, bundle.noise))
    seeds = list(range(args.seed, args.seed + args.num_samples))
    out = Path(args.out)
    (out / "png").mkdir(parents=True, exist_ok=True)
    images, latents = [], []
    for chunk, x0, imgs in generate(
        bundle.sample, seeds, bundle.latent_shape, sigmas, args.batch_size, bundle.codec.decode, args.device
    ):
        u8 = to_uint8(imgs.cpu()).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
        if not args.no_png:
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
    grid = torch.from_numpy(images[: args.grid_size]).permute(0, 3, 1, 2)
    save_png(image_grid(grid), out / "grid.png")
    meta = {
        "checkpoint": str(args.checkpoint),
        "kind": bundle.kind,
        "weights": bundle.weights,
        "sigmas": sigmas,
        "seeds": [seeds[0], seeds[-1]],
        "num_samples": len(seeds),
    }
    (out / "samples.json").write_text(json.dumps(meta, indent=2))
    print(
        f"wrote {len(seeds)} samples at sigmas {sigmas} to {out} (samples.npz, grid.png"
        f"{'' if args.no_png else ', png/'})"
    )
    return out


if __name__ == "__main__":
    run_cli(main)
