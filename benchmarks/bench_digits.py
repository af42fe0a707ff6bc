"""Cost of one in-loop digit-metric pass (DigitMetricCallback at its defaults: 256 EMA samples at 1 and 2
NFE, decoded, scored) against the main job's training step, on the built-in MNIST.

Trains `--steps` steps of the main job (`experiment=cauchy_ot`, digit callback and grids off), times the
steps after `--warmup`, then times the callback's pass on the trained module, in wall seconds and in this
process's CPU seconds (all threads; less sensitive to other jobs on a shared machine). Prints one JSON line.

  .venv/bin/python benchmarks/bench_digits.py [--steps 50] [--warmup 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

MAIN_JOB_STEPS = 1500  # `python -m lct.train experiment=cauchy_ot` (curriculum=cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-root", default=None, help="built-in MNIST latent cache (default: a temporary folder)")
    args = ap.parse_args()
    import lightning as L
    from train_utils import compose_cfg

    from lct.eval.digit_callback import DigitMetricCallback
    from lct.train.run import build

    marks = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step in (args.warmup, args.steps):
                marks[trainer.global_step] = (time.perf_counter(), time.process_time())

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or f"{tmp}/mnist"
        cfg = compose_cfg(
            tmp,
            [
                "experiment=cauchy_ot",
                f"trainer.max_steps={args.steps}",
                f"data.root={root}",
                "~callbacks.sample_grid",
                "~callbacks.checkpoint",
                "~callbacks.final_checkpoint",
                "~callbacks.digits",
            ],
            data="mnist",
        )
        module, dm, trainer, _ = build(cfg)
        trainer.callbacks.append(Clock())
        trainer.fit(module, datamodule=dm)
        step_s, step_cpu = ((b - a) / (args.steps - args.warmup) for a, b in zip(marks[args.warmup], marks[args.steps]))
        cb = DigitMetricCallback()
        cb.on_fit_start(trainer, module)
        times, cpu, scores = [], [], None
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            scores = cb.evaluate(trainer, module)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        decoded = torch.rand(2 * cb.num_samples, 1, 32, 32) * 2 - 1
        t = time.perf_counter()
        cb.scorer.score(decoded.split(cb.batch_size))
        classifier_s = time.perf_counter() - t
    passes = MAIN_JOB_STEPS // cb.every_n_steps  # the last one falls on the final step
    pass_s, pass_cpu = statistics.median(times), statistics.median(cpu)
    print(
        json.dumps(
            {
                "main_job_s_per_step": round(step_s, 4),
                "main_job_cpu_s_per_step": round(step_cpu, 4),
                "main_job_s": round(MAIN_JOB_STEPS * step_s, 1),
                "callback_pass_s": [round(x, 3) for x in times],
                "callback_pass_cpu_s": [round(x, 3) for x in cpu],
                "classifier_only_s": round(classifier_s, 3),
                "passes_per_main_job": passes,
                "callback_share_of_main_job_wall": round(passes * pass_s / (MAIN_JOB_STEPS * step_s), 5),
                "callback_share_of_main_job_cpu": round(passes * pass_cpu / (MAIN_JOB_STEPS * step_cpu), 5),
                "scores_after_steps": {k: round(v, 4) for k, v in scores.items()},
                "steps": args.steps,
                "warmup": args.warmup,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
