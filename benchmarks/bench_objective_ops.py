"""What a training step's objective asks of the host, without the backbone.

On a GPU a small backbone compiled into CUDA graphs costs the host almost nothing, and what is left is the
objective around it: index and noise draws, the coupling, the preconditioning, the loss terms, the
diagnostics. This counts, per step of `objective.step` + backward + `observe` (and `diagnostics` every
`log_every` steps, as in training), the aten ops the host dispatches and the device-to-host reads
(`aten::_local_scalar_dense`: `.item()`, `bool(tensor)`; each one waits for the device on a GPU), and times the
step on the CPU with the backbone replaced by a 1x1 convolution. Prints one JSON line per experiment.

  .venv/bin/python benchmarks/bench_objective_ops.py                          # slct_noot, ilct, edm
  .venv/bin/python benchmarks/bench_objective_ops.py --experiments slct --batch 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


class Stub(torch.nn.Module):
    """Stands in for the backbone: one 1x1 convolution, so the backbone's own ops are a handful."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x, c_noise, *args, **kwargs):
        return self.conv(x)


def measure(experiment: str, batch: int, steps: int, timed: int, log_every: int) -> dict:
    from train_utils import compose_cfg

    from lct.builders import build_datamodule, build_objective, build_student

    overrides = [f"experiment={experiment}", f"data.batch_size={batch}", "trainer.max_steps=20000"]
    cfg = compose_cfg(tempfile.mkdtemp(), overrides, data="synthetic")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    f = build_student(cfg)
    f.backbone = Stub(dm.latent_shape[0])
    objective = build_objective(cfg, f, cfg.trainer.max_steps, dm.latent_shape)
    loader = iter(dm.train_dataloader())

    def step(k: int) -> None:
        out = objective.step(f, next(loader), k)
        out.terms.loss.backward()
        objective.observe(out)
        if k % log_every == 0:
            objective.diagnostics(out)

    for k in range(5):
        step(k)
    with profile() as prof:
        for k in range(5, 5 + steps):
            step(k)
    events = prof.key_averages()
    aten = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    reads = sum(e.count for e in events if e.key == "aten::_local_scalar_dense") / steps
    t0 = time.perf_counter()
    for k in range(5 + steps, 5 + steps + timed):
        step(k)
    ms = (time.perf_counter() - t0) / timed * 1000
    return {
        "experiment": experiment,
        "batch": batch,
        "aten_ops_per_step": round(aten, 1),
        "host_reads_per_step": round(reads, 2),
        "ms_per_step_without_backbone": round(ms, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["slct_noot", "ilct", "edm"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=25, help="profiled steps (a multiple of --log-every counts it fairly)")
    ap.add_argument("--timed", type=int, default=100, help="timed steps after the profiled ones")
    ap.add_argument("--log-every", type=int, default=25, help="the run's log_every: diagnostics every this many steps")
    args = ap.parse_args()
    for experiment in args.experiments:
        print(json.dumps(measure(experiment, args.batch, args.steps, args.timed, args.log_every)), flush=True)


if __name__ == "__main__":
    main()
