"""Encode images into latent shards: `python -m lct.encode --source DIR|mnist|skimage --out ROOT`.

Examples
  python -m lct.encode --source data/celebahq256/images --out data/latents/celebahq256 --size 256
  python -m lct.encode --source data/church/images --out data/latents/church256 --size 256 --flip
  python -m lct.encode --source mnist --vae builtin:mnist --size 32 --out data/mnist
Rerunning an interrupted command resumes it; `--stats-only` recomputes mean.npy/std.npy.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from lct.cli import positive_int, run_cli
from lct.data.encoding import EncodeOptions, encode_latents, finalize_stats


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lct.encode",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", help="image folder (png/jpg/webp, recursive) or a built-in: mnist, skimage")
    p.add_argument("--out", required=True, help="latent root to write (or resume)")
    p.add_argument(
        "--vae",
        default="stabilityai/sd-vae-ft-ema",
        help="hub id, local save_pretrained folder, or builtin:mnist (the shipped project VAE)",
    )
    p.add_argument("--size", type=positive_int, default=256, help="resize shorter side and center-crop to this")
    p.add_argument("--flip", action="store_true", help="also store horizontally flipped copies")
    p.add_argument(
        "--posterior",
        choices=("sample", "mean"),
        default="sample",
        help="posterior sample (the paper) or its mean (deterministic)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--shard-items", type=positive_int, default=2048, help="source images per shard (the resume unit)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=positive_int, default=4, help="threads decoding image files")
    p.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping")
    p.add_argument("--stats-only", action="store_true", help="only recompute mu/s of an existing root")
    args = p.parse_args(argv)
    if not args.stats_only and not args.source:
        p.error("--source is required (unless --stats-only)")
    return args


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.stats_only:
        return finalize_stats(args.out)
    command = "python -m lct.encode " + shlex.join(sys.argv[1:] if argv is None else argv)
    opts = EncodeOptions(
        source=args.source,
        out=args.out,
        vae=args.vae,
        size=args.size,
        flip=args.flip,
        posterior=args.posterior,
        seed=args.seed,
        batch_size=args.batch_size,
        shard_items=args.shard_items,
        device=args.device,
        strict=args.strict,
        workers=args.workers,
        command=command,
    )
    return encode_latents(opts)


def entry() -> None:
    """`python -m lct.encode` and the console script `lct-encode`."""
    run_cli(main)
