"""Loader throughput on a synthetic memory-mapped latent root: `python benchmarks/bench_data.py`.

Writes N heavy-tailed 4x32x32 latents (the paper's latent shape) as shards, then times full epochs of
LatentDataModule.train_dataloader() (normalized x0 batches) for several worker counts.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from lct.core import PAPER
from lct.data import LatentDataModule
from lct.data.encoding import write_array_root


def make_root(root: Path, count: int, shard: int, shape=(4, 32, 32)) -> None:
    rng = np.random.default_rng(0)
    chunks = (
        (rng.standard_t(4, size=(min(shard, count - s), *shape)) * 5).astype(np.float32) for s in range(0, count, shard)
    )
    write_array_root(root, chunks, command="benchmarks/bench_data.py")


def time_epochs(root: Path, batch_size: int, workers: int, epochs: int) -> float:
    """Latents per second over `epochs` epochs, after one warm-up epoch (page cache, worker start)."""
    dm = LatentDataModule(sigma_data=PAPER.sigma_data, root=str(root), batch_size=batch_size, num_workers=workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    sampler = loader.sampler
    for _batch in loader:
        pass
    seen, start = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        for batch in loader:
            seen += len(batch)
    return seen / (time.perf_counter() - start)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--shard", type=int, default=4096, help="latents per shard file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "latents"
        make_root(root, args.count, args.shard)
        size_mb = sum(f.stat().st_size for f in (root / "shards").glob("*.npy")) / 2**20
        print(f"{args.count} latents 4x32x32 float32 in {size_mb:.0f} MiB of shards, batch {args.batch_size}")
        for workers in args.workers:
            rate = time_epochs(root, args.batch_size, workers, args.epochs)
            print(f"num_workers={workers}: {rate:,.0f} latents/s ({rate / args.batch_size:,.0f} batches/s)")


if __name__ == "__main__":
    main()
