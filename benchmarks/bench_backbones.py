"""CPU throughput of the backbones: one training step = forward + backward + RAdam step.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_backbones.py

Prints a markdown table (median over the timed iterations). Tiny variants run at batch 64, the paper
sizes at batch 2 with few iterations, so the whole run stays under ~3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from lct.nn import build_backbone, trainable_parameters  # noqa: E402

# (registry name, norm override or None, latent resolution, batch, timed iterations)
CASES = [
    ("unet_tiny", None, 8, 64, 10),
    ("unet_tiny", None, 16, 64, 5),
    ("unet_tiny", "nsln", 8, 64, 10),
    ("dit_tiny", None, 8, 64, 10),
    ("dit_tiny", None, 16, 64, 5),
    ("unet_paper", "nsln", 32, 2, 3),
    ("unet_paper", None, 32, 2, 3),
    ("dit_B_2", None, 32, 2, 3),
]


def time_step(name: str, norm: str | None, resolution: int, batch: int, iters: int, warmup: int = 2):
    """(parameter count, median wall seconds per step, median process CPU seconds per step)."""
    torch.manual_seed(0)
    kw = {"in_channels": 4, "resolution": resolution, **({"norm": norm} if norm else {})}
    model = build_backbone(name, **kw)
    opt = torch.optim.RAdam(trainable_parameters(model), lr=1e-4, weight_decay=1e-4)
    x, c = torch.randn(batch, 4, resolution, resolution), torch.randn(batch) * 500
    wall, cpu = [], []
    for i in range(warmup + iters):
        t0, c0 = time.perf_counter(), time.process_time()
        model(x, c).square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return sum(p.numel() for p in model.parameters()), statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated registry names to run")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}\n"
    )
    # CPU seconds (all threads) do not grow when other processes share the cores; wall time does.
    print("| backbone | norm | latent | batch | params | ms/step (wall) | samples/s | CPU s/step |")
    print("|---|---|---|---|---|---|---|---|")
    for name, norm, res, batch, iters in CASES:
        if only and name not in only:
            continue
        n, sec, cpu = time_step(name, norm, res, batch, iters, warmup=1 if batch < 8 else 2)
        print(
            f"| {name} | {norm or 'default'} | 4x{res}x{res} | {batch} | {n / 1e6:.2f}M | "
            f"{sec * 1e3:.0f} | {batch / sec:.1f} | {cpu:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
