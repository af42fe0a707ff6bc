"""What a training step's objective asks of the host, without the backbone.

On a GPU a small backbone compiled into CUDA graphs costs the host almost nothing, and what is left is the
objective around it: index and noise draws, the coupling, the preconditioning, the loss terms, the
diagnostics. This counts, per step of `objective.step` + backward + `observe` (and `diagnostics` every
`log_every` steps, as in training), the aten ops the host dispatches and the device-to-host reads
(`aten::_local_scalar_dense`: `.item()`, `bool(tensor)`; each one waits for the device on a GPU), and times the
step with the backbone replaced by a 1x1 convolution. On a GPU (`--device cuda`) it also counts the host's
waits for the device (`cudaStreamSynchronize`: reads, and copies from pageable host memory) and the copies
(`cudaMemcpyAsync`). Prints one JSON line per experiment.

  .venv/bin/python benchmarks/bench_objective_ops.py                          # slct_noot, ilct, edm
  .venv/bin/python benchmarks/bench_objective_ops.py --experiments slct --batch 256
  python3 benchmarks/bench_objective_ops.py --device cuda [--src OLD_CHECKOUT]   # before/after on a GPU
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


def use_checkout(root: Path) -> None:
    """Import lct (and the tests' config helper) from `root`: this checkout, or an older one to compare with."""
    sys.path.insert(0, str(root / "src"))
    sys.path.insert(0, str(root / "tests"))


class Stub(torch.nn.Module):
    """Stands in for the backbone: one 1x1 convolution, so the backbone's own ops are a handful."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x, c_noise, *args, **kwargs):
        return self.conv(x)


def measure(experiment: str, batch: int, steps: int, timed: int, log_every: int, device: str = "cpu") -> dict:
    from train_utils import compose_cfg

    from lct.builders import build_datamodule, build_objective, build_student

    overrides = [f"experiment={experiment}", f"data.batch_size={batch}", "trainer.max_steps=20000"]
    cfg = compose_cfg(tempfile.mkdtemp(), overrides, data="synthetic")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    f = build_student(cfg)
    f.backbone = Stub(dm.latent_shape[0])
    objective = build_objective(cfg, f, cfg.trainer.max_steps, dm.latent_shape)
    f, objective = f.to(device), objective.to(device)
    loader = iter(dm.train_dataloader())
    batches = [next(loader).to(device) for _ in range(8)]  # on the device already: the objective's cost alone

    def step(k: int) -> None:
        out = objective.step(f, batches[k % len(batches)], k)
        out.terms.loss.backward()
        objective.observe(out)
        if k % log_every == 0:
            objective.diagnostics(out)

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    for k in range(5):
        step(k)
    sync()
    with profile() as prof:
        for k in range(5, 5 + steps):
            step(k)
        sync()
    events = prof.key_averages()
    count = lambda name: sum(e.count for e in events if e.key == name) / steps  # noqa: E731
    aten = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    t0 = time.perf_counter()
    for k in range(5 + steps, 5 + steps + timed):
        step(k)
    sync()
    ms = (time.perf_counter() - t0) / timed * 1000
    row = {
        "experiment": experiment,
        "batch": batch,
        "device": torch.cuda.get_device_name() if device != "cpu" else "cpu",
        "aten_ops_per_step": round(aten, 1),
        "host_reads_per_step": round(count("aten::_local_scalar_dense"), 2),
        "ms_per_step_without_backbone": round(ms, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device != "cpu":
        row["stream_syncs_per_step"] = round(count("cudaStreamSynchronize") + count("cudaDeviceSynchronize"), 2)
        row["memcpys_per_step"] = round(count("cudaMemcpyAsync"), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["slct_noot", "ilct", "edm"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=25, help="profiled steps (a multiple of --log-every counts it fairly)")
    ap.add_argument("--timed", type=int, default=100, help="timed steps after the profiled ones")
    ap.add_argument("--log-every", type=int, default=25, help="the run's log_every: diagnostics every this many steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--src", type=Path, default=ROOT, help="the checkout whose lct is measured (default: this one)")
    args = ap.parse_args()
    use_checkout(args.src)
    for experiment in args.experiments:
        row = measure(experiment, args.batch, args.steps, args.timed, args.log_every, args.device)
        print(json.dumps({**row, "src": str(args.src)}), flush=True)


if __name__ == "__main__":
    main()
