"""FID / KID / precision / recall of a checkpoint at 1 and 2 NFE (the paper's protocol: 50,000 samples); a
diffusion (experiment=edm) checkpoint at 1 and 35 NFE or any odd --nfe (Heun's sampler).

    python -m lct.evaluate CKPT --out eval/ [--num-samples 50000] [--search] [--metrics inception,digit]

Resumable (generated features are saved in chunks under --out/features), reference statistics cached
(--reference), results as metrics.json plus a markdown row. `--metrics digit` adds (or, alone, replaces)
the built-in MNIST's digit FID / legibility / coverage (lct.eval.digits); Inception FID stays the reported
standard. --search sweeps sigma_mid over indices of the checkpoint's sigma_mid grid (641 points) for 2 NFE
and writes the curve (search.json, search.png) and its minimum: Inception FID, or under `--metrics digit`
alone the digit FID (seconds on a CPU). Choose sigma_mid on other --seed noise than the noise you report.
"""

from __future__ import annotations

import argparse
import logging

from lct.cli import at_least, positive_int, run_cli
from lct.cli.sample import add_sigma_args
from lct.eval.inception import ENV_VAR, RESIZE_MODES
from lct.eval.protocol import PROTOCOLS
from lct.eval.run import evaluate

SEARCH_INDICES = list(range(380, 481, 10))  # brackets the paper's best 420-440
METRICS = ("inception", "digit")


def metric_list(text: str) -> list[str]:
    """`inception,digit` -> ["inception", "digit"] (argparse type)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--metrics takes a comma-separated list of {', '.join(METRICS)}; got {text!r}"
        )
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", default="eval")
    p.add_argument("--num-samples", type=at_least(2), default=50_000)
    p.add_argument(
        "--nfe",
        type=int,
        nargs="+",
        default=None,
        help="NFE to score: 1 and/or 2 for a consistency checkpoint (default both); any odd numbers for a "
        "diffusion checkpoint (Heun, NFE = 2 steps - 1; default 1 35)",
    )
    p.add_argument("--reference", default=None, help="reference statistics cache (default OUT/reference.pt)")
    p.add_argument(
        "--reference-images",
        default=None,
        help="real images (folder, .npz, .npy, .pt); default: decode the checkpoint's training latents",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="the training latents (the lct.encode --out) when the checkpoint's data.root is not found from here",
    )
    p.add_argument("--num-reference", type=at_least(2), default=50_000, help="at most this many real images")
    p.add_argument("--on-stale", choices=("recompute", "error"), default="recompute")
    p.add_argument(
        "--search",
        action="store_true",
        help="sweep sigma_mid for 2 NFE (Inception FID; digit FID under --metrics digit alone)",
    )
    p.add_argument("--search-indices", type=int, nargs="+", default=SEARCH_INDICES)
    p.add_argument(
        "--search-num-samples", type=at_least(2), default=None, help="samples per search point (default --num-samples)"
    )
    p.add_argument("--inception-path", default=None, help=f"FID InceptionV3 TorchScript file (or ${ENV_VAR})")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default="tf1_bilinear")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="ours",
        help="ours (torchmetrics conventions) or authors (the paper's pipeline: uint8 truncation, JPEG q75, "
        "pytorch-fid resize, real images as reference, samples rounded up to batches of 256)",
    )
    p.add_argument("--kid-subset-size", type=at_least(2), default=1000)
    p.add_argument("--chunk-size", type=positive_int, default=1000, help="samples per resumable feature chunk")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--metrics",
        type=metric_list,
        default=["inception"],
        help="inception (FID/KID/precision/recall, the reported standard), digit (built-in MNIST only: "
        "digit FID, legibility, coverage from the shipped digit classifier), or both: inception,digit",
    )
    add_sigma_args(p)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return evaluate(args)


def entry() -> None:
    """`python -m lct.evaluate` and the console script `lct-evaluate`."""
    run_cli(main)
