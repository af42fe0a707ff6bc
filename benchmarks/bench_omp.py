"""The main job's training step under each OpenMP wait policy, on an idle machine and beside one busy process.

OpenMP reads OMP_WAIT_POLICY once, when torch loads, so every case is a fresh `bench_train.py --paths plain`
process (the main job's step without Lightning: `experiment=slct_noot`, `unet_tiny`, 4x8x8, batch 128).
`--load` adds one CPU-bound process beside each case (what a second job on a 2-core machine does).

    .venv/bin/python benchmarks/bench_omp.py                 # idle machine: ~4 min
    .venv/bin/python benchmarks/bench_omp.py --load          # beside one busy process
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name -> environment changes (None: unset)
    "default (2 threads)": {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": None},
    "PASSIVE (2 threads)": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": None},
    "1 thread": {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": "1"},
}


def run_case(changes: dict, steps: int, warmup: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--paths", "plain"]
    cmd += ["--steps", str(steps), "--warmup", str(warmup), "--overrides", "experiment=slct_noot"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--load", action="store_true", help="one busy process beside each case")
    args = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        for rep in range(args.repeats):
            for name, changes in CASES.items():
                r = run_case(changes, args.steps, args.warmup)
                print(
                    json.dumps(
                        {
                            "case": name,
                            "load": args.load,
                            "repeat": rep,
                            "s_per_step": r["s_per_step"],
                            "threads": r["threads"],
                        }
                    ),
                    flush=True,
                )
    finally:
        if busy is not None:
            busy.kill()


if __name__ == "__main__":
    main()
