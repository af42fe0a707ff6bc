"""Where the main job's CPU training step goes: FLOPs, wall time and the profiler's op shares.

The step of `make run` (experiment=slct_noot, Adam beta2 0.99, `unet_tiny`, batch 128, 4x8x8 MNIST latents) as a
plain loop (the Lightning overhead is ~1%: bench_train.py): the objective's student and teacher forwards, the
backward, RAdam and the EMA. Prints one JSON line: s/step, GFLOP/step (torch's FLOP counter over a whole step,
backward included), the achieved GFLOP/s beside a large matmul's, and the profiler's self-CPU share of the
convolutions (forward and backward) and of everything else.

  .venv/bin/python benchmarks/profile_cpu_step.py              # ~1 minute on an idle 2-core machine
  .venv/bin/python benchmarks/profile_cpu_step.py +backbone.num_blocks=1   # a variant: more lct.train overrides
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

MAIN_JOB = ["experiment=slct_noot", "optimizer.betas=[0.9,0.99]"]  # the Makefile's `run` target


def matmul_gflop_per_s(n: int = 2048, repeats: int = 5) -> float:
    """The machine's dense fp32 rate, for scale: the best of `repeats` n x n matmuls."""
    from bench_eval import timed

    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, repeats) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("overrides", nargs="*", help="more lct.train overrides after the main job's, e.g. a backbone's")
    args = ap.parse_args()
    from bench_train import plain_step
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    from train_utils import compose_cfg

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(tmp, ["trainer.max_steps=1500", *MAIN_JOB, *args.overrides], data="mnist")
    torch.manual_seed(0)
    step = plain_step(cfg)
    ks = itertools.count()  # the global step, so the curriculum and EMA warm-up advance as in a run
    for _ in range(args.warmup):
        step(next(ks))
    with FlopCounterMode(display=False) as counter:
        step(next(ks))
    gflop = counter.get_total_flops() / 1e9
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(next(ks))
    s_per_step = (time.perf_counter() - t0) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            step(next(ks))
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    share = lambda keys: sum(e.self_cpu_time_total for e in events if e.key in keys) / total  # noqa: E731
    conv_fwd, conv_bwd = share({"aten::mkldnn_convolution"}), share({"aten::convolution_backward"})
    print(
        json.dumps(
            {
                "overrides": [*MAIN_JOB, *args.overrides],
                "parameters": sum(p.numel() for p in step.student.parameters()),
                "batch": int(cfg.data.batch_size),
                "threads": torch.get_num_threads(),
                "s_per_step": round(s_per_step, 4),
                "gflop_per_step": round(gflop, 2),
                "gflop_per_s": round(gflop / s_per_step, 1),
                "matmul_gflop_per_s": round(matmul_gflop_per_s(), 1),
                "share_conv_forward": round(conv_fwd, 3),
                "share_conv_backward": round(conv_bwd, 3),
                "share_rest": round(1 - conv_fwd - conv_bwd, 3),
                "aten_ops_per_step": round(sum(e.count for e in events) / args.profile_steps),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
