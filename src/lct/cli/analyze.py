"""Outliers in pixels vs VAE latents of the same images (the paper's Figure 1): `python -m lct.analyze`.

Per channel: mean, std, excess kurtosis, and the fraction of values beyond the inner (1.5 IQR) and
outer (3 IQR) Tukey fences, for the pixels, the raw latents z and the normalized x0 the model trains on.
Writes latent_statistics.json and latent_boxplot.png (box-and-whisker per channel) into --out.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from lct.cli import at_least, run_cli
from lct.data.analysis import latent_statistics


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.analyze", description=__doc__.split("\n")[0])
    p.add_argument("--root", default="data/mnist", help="latent root written by python -m lct.encode")
    p.add_argument("--builtin", default=None, help="build this built-in's latents at --root first (mnist)")
    p.add_argument("--out", default="experiments/latent_statistics")
    p.add_argument("--max-items", type=at_least(2), default=5000, help="images sampled for the statistics")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.builtin:
        from lct.data.builtin import ensure_builtin

        ensure_builtin(args.root, args.builtin)
    command = "python -m lct.analyze " + shlex.join(sys.argv[1:] if argv is None else argv)
    return latent_statistics(args.root, args.out, args.max_items, args.seed, command)


def entry() -> None:
    """`python -m lct.analyze` and the console script `lct-analyze`."""
    run_cli(main)
