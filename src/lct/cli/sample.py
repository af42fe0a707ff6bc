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
from pathlib import Path

import torch

from lct.cli import device, positive_int, run_cli
from lct.errors import LctError
from lct.eval.bundle import load_bundle
from lct.eval.samples import resolve_sigma_mid, selected_weights, write_samples


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
    p.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--batch-size", type=positive_int, default=64)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--num-samples", type=positive_int, default=64)
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
    p.add_argument("--grid-size", type=positive_int, default=64, help="samples shown in grid.png")
    add_sigma_args(p)
    args = p.parse_args(argv)
    if args.sigmas and any(a <= b for a, b in zip(args.sigmas, args.sigmas[1:])):
        p.error(f"argument --sigmas: must be strictly descending (sigma_max first), got {args.sigmas}")
    return args


def main(argv=None) -> Path:
    args = parse_args(argv)
    bundle = load_bundle(args.checkpoint, ema=selected_weights(args.no_ema, args.ema_decay), device=args.device)
    if args.sigmas and bundle.kind == "diffusion":
        raise LctError(
            f"--sigmas is for consistency checkpoints; {args.checkpoint} is a diffusion (EDM) checkpoint: "
            "choose the Heun steps with --nfe (an odd number, NFE = 2 steps - 1)"
        )
    sigmas = args.sigmas or bundle.nfe_sigmas(
        args.nfe, resolve_sigma_mid(bundle.noise, args.sigma_mid, args.sigma_mid_index)
    )
    seeds = list(range(args.seed, args.seed + args.num_samples))
    out = write_samples(
        bundle,
        args.checkpoint,
        seeds,
        sigmas,
        Path(args.out),
        args.batch_size,
        args.device,
        not args.no_png,
        args.grid_size,
    )
    print(
        f"wrote {len(seeds)} samples at sigmas {sigmas} to {out} (samples.npz, grid.png"
        f"{'' if args.no_png else ', png/'})"
    )
    return out


def entry() -> None:
    """`python -m lct.sample` and the console script `lct-sample`."""
    run_cli(main)
