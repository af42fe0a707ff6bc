"""How often a two-rank gloo run aborts at exit, with and without lct's ReleaseProcessGroup.

Each trial spawns two ranks (torch.multiprocessing.spawn, gloo on CPU, as `trainer=ddp_cpu` does), which
run a few collectives and return. A process group still alive when the interpreter exits can abort its
process ("terminate called without an active exception"); spawn then raises ProcessExitedException in the
parent. `--release` has each rank run ReleaseProcessGroup.setup, as lct.train's trainer does, so the group is
destroyed at exit. Prints and writes a JSON line: aborts out of trials.

    .venv/bin/python benchmarks/ddp_exit.py --trials 60             # without: 9 of 60 aborted (benchmarks/README.md)
    .venv/bin/python benchmarks/ddp_exit.py --trials 60 --release   # with
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Imported before any process group exists, as in a Lightning rank: torch._dynamo (which Lightning imports)
# imported after init_process_group keeps the group's threads alive through destroy_process_group.
from lct.train.callbacks import ReleaseProcessGroup  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, release: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if release:
        ReleaseProcessGroup().setup(SimpleNamespace(world_size=2), None, "fit")
    t = torch.ones(1000)
    for _ in range(20):
        dist.all_reduce(t)
        dist.barrier()


def count_aborts(trials: int, release: bool) -> int:
    aborts = 0
    for _ in range(trials):
        try:
            mp.spawn(rank_main, args=(free_port(), release), nprocs=2)
        except mp.ProcessExitedException:
            aborts += 1
    return aborts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--release", action="store_true", help="each rank runs ReleaseProcessGroup.setup")
    parser.add_argument("--out", type=Path, default=None, help="append the result as a JSON line here")
    args = parser.parse_args()
    start = time.perf_counter()
    aborts = count_aborts(args.trials, args.release)
    row = {
        "release": args.release,
        "trials": args.trials,
        "aborts": aborts,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(row))
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
