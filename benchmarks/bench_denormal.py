"""Denormal floats and the CPU training step: a run's checkpoint, timed with and without flush-to-zero.

Weights that weight decay drives towards zero while their gradient vanishes end in the denormal range
(|x| < 1.18e-38), where x86 arithmetic is many times slower; every convolution that reads them pays.
This loads a run's checkpoint (student weights and RAdam state), counts its denormal values, and times the
same plain training step (bench_train.plain_update: objective, backward, RAdam, EMA; no Lightning) from the
checkpoint's state and global step, the same seed and batches, with `torch.set_flush_denormal(False)` and
`(True)`, alternating; and whether the two settings' losses are bit-identical. The flag is per thread and
the OpenMP workers keep the one they were made with, so "on" flushes every thread only at one thread
(`flushed_share_on` says how much of a parallel op it flushed; run it with OMP_NUM_THREADS=1).

    .venv/bin/python benchmarks/bench_denormal.py outputs/study/ilct_20k/seed0/checkpoints/epoch=0-step=3500.ckpt
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def denormals(tensors) -> tuple[int, int]:
    """(denormal count, element count) over the floating-point tensors."""
    tiny = torch.finfo(torch.float32).tiny
    d = n = 0
    for t in tensors:
        if torch.is_tensor(t) and t.is_floating_point():
            d += int(((t != 0) & (t.abs() < tiny)).sum())
            n += t.numel()
    return d, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="a training checkpoint of lct.train (its run dir's config_resolved.yaml is read)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from bench_train import plain_update
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from lct.builders import build_datamodule, build_objective, build_student
    from lct.io.ckpt_file import read_checkpoint_file

    ckpt_path = Path(args.ckpt)
    cfg = OmegaConf.load(ckpt_path.parents[1] / "config_resolved.yaml")
    ckpt = read_checkpoint_file(ckpt_path)
    k0 = int(ckpt["global_step"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    state = {k.removeprefix("student."): v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}
    batches = list(itertools.islice(iter(dm.train_dataloader()), args.steps))  # the same batches for every run

    def fresh():
        """The run's state at the checkpoint, the same seed and batches: a step function and its network."""
        torch.manual_seed(0)
        f = build_student(cfg)
        f.load_state_dict(state)
        objective = build_objective(cfg, f, cfg.trainer.max_steps, dm.latent_shape)
        opt = instantiate(cfg.optimizer, _convert_="all")(params=[p for p in f.parameters() if p.requires_grad])
        opt.load_state_dict(copy.deepcopy(ckpt["optimizer_states"][0]))  # load_state_dict keeps the tensors
        ema = [p.detach().clone() for p in f.parameters()]

        def step(k: int) -> float:
            return float(plain_update(cfg, f, objective, opt, ema, batches[k - k0], k))

        return step, f, opt

    _, f, opt = fresh()
    counts = {
        "weights": denormals(f.parameters()),
        "exp_avg": denormals(s["exp_avg"] for s in opt.state.values()),
        "exp_avg_sq": denormals(s["exp_avg_sq"] for s in opt.state.values()),
    }
    share = {name: denormals([w]) for name, w in f.named_parameters()}
    most = sorted(share, key=lambda name: -share[name][0] / share[name][1])[:6]
    from lct.train.speed import flushed_fraction

    times: dict[bool, list[float]] = {False: [], True: []}
    shares: dict[bool, float] = {}
    losses: dict[bool, list[list[float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for flush in (False, True):  # each from the checkpoint: a flushed step zeroes the denormal weights
            step, f, _ = fresh()
            torch.set_flush_denormal(flush)
            shares[flush] = flushed_fraction()
            t0 = time.perf_counter()
            run = [step(k0 + j) for j in range(args.steps)]
            times[flush].append((time.perf_counter() - t0) / args.steps)
            losses[flush].append(run)
    torch.set_flush_denormal(False)
    median = {flush: sorted(t)[len(t) // 2] for flush, t in times.items()}
    print(
        json.dumps(
            {
                "ckpt": str(ckpt_path),
                "global_step": k0,
                "experiment": cfg.get("experiment_name"),
                "threads": torch.get_num_threads(),
                "denormal / total": {name: list(c) for name, c in counts.items()},
                "most_denormal_weights": {name: round(share[name][0] / share[name][1], 3) for name in most},
                "s_per_step_flush_off": [round(t, 4) for t in times[False]],
                "s_per_step_flush_on": [round(t, 4) for t in times[True]],
                "flushed_share_on": shares[True],
                "speedup_median": round(median[False] / median[True], 2),
                # the harness is deterministic when each setting repeats its own losses exactly
                "repeats_identical": all(r == runs[0] for runs in losses.values() for r in runs),
                "losses_identical": losses[False][0] == losses[True][0],
                "max_loss_diff": max(abs(a - b) for a, b in zip(losses[False][0], losses[True][0], strict=True)),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
