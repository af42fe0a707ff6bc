"""Seconds per training step of `make run` (sLCT without OT, beta2 0.99, unet_tiny, batch 128) for three ways of
spending a CPU's cores, each a real `python -m lct.train` process timed between two steps by a callback on rank 0:

  1x2  one process, 2 torch threads (make run today on a 2-core host)
  1x1  one process, 1 thread
  2x1  trainer=ddp_cpu: two DDP ranks of 1 thread each, each computing half the global batch of 128 (the same
       training: the gradients are averaged over the same 128 samples; tests/test_ddp.py)

  .venv/bin/python benchmarks/bench_cores.py                    # all three, 130 steps, timed after step 30
  .venv/bin/python benchmarks/bench_cores.py --experiment meanflow --rows 1x2 1x1 -- data.batch_size=64

Prints one JSON line per row. The in-loop callbacks (grids, digit metrics, checkpoints) are off: step cost only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # name -> (trainer, threads per process)
    "1x2": ("cpu", 2),
    "1x1": ("cpu", 1),
    "2x1": ("ddp_cpu", 1),
}
QUIET = ["callbacks.sample_grid=null", "callbacks.digits=null", "callbacks.checkpoint=null"]
QUIET += ["callbacks.final_checkpoint=null"]


class StepClock(L.Callback):
    """Writes {step: perf_counter} of rank 0 at steps `warmup` and `steps` to `path` (built by Hydra from
    `+callbacks.clock`; module level, so that ddp_spawn can pickle it)."""

    def __init__(self, path: str, warmup: int, steps: int):
        self.path, self.at = Path(path), (int(warmup), int(steps))

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_rank == 0 and trainer.global_step in self.at:
            marks = json.loads(self.path.read_text()) if self.path.exists() else {}
            marks[str(trainer.global_step)] = time.perf_counter()
            self.path.write_text(json.dumps(marks))


def run_row(name: str, experiment: str, steps: int, warmup: int, extra: list[str]) -> dict:
    trainer, threads = ROWS[name]
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks.json"
        cmd = [
            sys.executable,
            "-m",
            "lct.train",
            f"experiment={experiment}",
            "optimizer.betas=[0.9,0.99]",
            f"trainer={trainer}",
            f"trainer.max_steps={steps}",
            *QUIET,
            *extra,
            "+callbacks.clock._target_=bench_cores.StepClock",
            f"+callbacks.clock.path={marks}",
            f"+callbacks.clock.warmup={warmup}",
            f"+callbacks.clock.steps={steps}",
            f"hydra.run.dir={tmp}/run",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0 or not marks.exists():
            raise SystemExit(f"{name}: lct.train failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        t = json.loads(marks.read_text())
    return {
        "row": name,
        "experiment": experiment,
        "trainer": trainer,
        "threads_per_process": threads,
        "overrides": extra,
        "s_per_step": (t[str(steps)] - t[str(warmup)]) / (steps - warmup),
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--experiment", default="slct_noot", help="make run's recipe unless told")
    p.add_argument("--steps", type=int, default=130)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("extra", nargs="*", help="more lct.train overrides (after --)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from lct.io.records import host_info

    cpu = host_info(threads=0)["cpu"]
    out = []
    for name in args.rows:
        result = {**run_row(name, args.experiment, args.steps, args.warmup, args.extra), "cpu": cpu}
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
