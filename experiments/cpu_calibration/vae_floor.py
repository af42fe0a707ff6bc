"""FID floor of the built-in data: VAE reconstructions (decoded real latents) vs the real digits.

No generator can beat the autoencoder that decodes its samples; this is the number to read the
calibration table against. Same reference cache and sample count as the table.

  .venv/bin/python experiments/cpu_calibration/vae_floor.py --reference ref.pt --indices floor_idx.npy --num 1000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from lct.core import PAPER
from lct.data import LatentCodec
from lct.data.shards import LatentShards, read_metadata
from lct.eval.metrics import GenerativeMetrics
from lct.eval.reference import load_reference


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="data/mnist", help="latent root of the built-in data")
    ap.add_argument("--reference", required=True, help="reference cache written by lct.evaluate")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--indices", required=True, help=".npy of latent indices, disjoint from the reference images")
    args = ap.parse_args()
    codec = LatentCodec.from_root(args.root, sigma_data=PAPER.sigma_data)
    shards = LatentShards(args.root, read_metadata(args.root))
    z = torch.from_numpy(shards.gather(np.sort(np.load(args.indices)[: args.num])))
    metrics = GenerativeMetrics(kid_subset_size=500)
    metrics.set_reference(load_reference(args.reference), 0, 1)
    for start in range(0, args.num, 100):
        metrics.update(codec.decode(codec.normalize(z[start : start + 100])))
    print(json.dumps({k: v for k, v in metrics.compute().items()}))


if __name__ == "__main__":
    main()
