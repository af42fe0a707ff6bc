"""Time OT pairing and the full sLCT loss on realistic shapes (docs/method.md; target: exact OT at B=256 < 10 ms).

Run: .venv/bin/python benchmarks/bench_core.py   (add --quick for a smoke run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from lct.core import (  # noqa: E402
    PAPER,
    Cauchy,
    ConsistencyFunction,
    LowNoiseDiffusion,
    karras_sigmas,
    lct_loss,
    lognormal_index_probs,
    ot_pair,
    ot_permutation,
    sample_indices,
    sq_euclidean_cost,
)


def timeit(fn, iters: int, warmup: int = 3) -> float:
    """Median wall time of fn() in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


class TinyNet(nn.Module):
    """A 2-conv stand-in so the loss timing is dominated by the loss math, not a backbone."""

    def __init__(self, c=4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, c, 3, padding=1))

    def forward(self, x, c_noise):
        return self.net(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    iters = 5 if args.quick else 50
    torch.manual_seed(0)
    rows = []
    for b in (128, 256):
        x0, noise = torch.randn(b, 4, 32, 32), torch.randn(b, 4, 32, 32)
        cost = sq_euclidean_cost(x0, noise)
        rows.append((f"cost matrix B={b}", timeit(lambda: sq_euclidean_cost(x0, noise), iters)))
        for m in ("exact", "pot"):
            rows.append((f"OT solve ({m}) B={b}", timeit(lambda: ot_permutation(cost, m), iters)))
        rows.append((f"ot_pair exact (cost+solve+gather) B={b}", timeit(lambda: ot_pair(x0, noise), iters)))
        f = ConsistencyFunction(TinyNet(), PAPER)
        s = karras_sigmas(641)
        p = lognormal_index_probs(s)

        def step():
            idx = sample_indices(p, b)
            terms = lct_loss(
                f,
                f,
                x0,
                noise,
                sigma_i=s[idx].float(),
                sigma_next=s[idx + 1].float(),
                indices=idx,
                n_scales=641,
                metric=Cauchy(),
                c=0.00025,
                diffusion=LowNoiseDiffusion(),
                sigma_data=PAPER.sigma_data,
            )
            terms.loss.backward()

        rows.append((f"lct_loss fwd+bwd (2-conv net) B={b}", timeit(step, max(iters // 5, 3))))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, latent 4x32x32")
    print("| what | median ms |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
