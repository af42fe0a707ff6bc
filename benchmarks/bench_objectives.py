"""Seconds per training step of each objective on the same backbone, batch and host, in one run (issue 40's
equal-CPU-time comparison: sCM's and MeanFlow's JVP cost). make run's shape: unet_tiny, batch 128, 4x8x8 latents
(synthetic: the data does not change the cost), the in-loop callbacks off. Prints one JSON line per objective.

  .venv/bin/python benchmarks/bench_objectives.py                        # all five, 40 steps after 10 of warm-up
  .venv/bin/python benchmarks/bench_objectives.py --rows scm slct_noot --steps 100
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch
from bench_train import lightning_run
from train_utils import compose_cfg

from lct.io.records import host_info

ROWS = {  # make run's recipe, iLCT, EDM and the two newer objectives, each with make run's optimizer
    "slct_noot": ["experiment=slct_noot"],
    "ilct": ["experiment=ilct"],
    "edm": ["experiment=edm"],
    "scm": ["experiment=scm"],
    "meanflow": ["experiment=meanflow"],
}
QUIET = ["callbacks.sample_grid=null", "callbacks.digits=null", "callbacks.checkpoint=null"]
QUIET += ["callbacks.final_checkpoint=null", "optimizer.betas=[0.9,0.99]", "data.batch_size=128"]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--steps", type=int, default=50, help="steps in all (the last steps - warmup are timed)")
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args(argv)
    out = []
    for row in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_cfg(tmp, [*ROWS[row], *QUIET, f"trainer.max_steps={args.steps}"])
            result = lightning_run(cfg, args.steps, args.warmup, "cpu")
        host = host_info(threads=torch.get_num_threads())
        result = {"row": row, "threads": host["threads"], "cpu": host["cpu"], "commit": host["git_commit"], **result}
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
