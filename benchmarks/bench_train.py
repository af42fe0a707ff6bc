"""Training-step cost: ConsistencyModule under Lightning vs a plain PyTorch loop of the same math.

Both paths build the same backbone from the same Hydra config, run the same lct.core.ConsistencyObjective (OT coupling,
composite loss, EMA update) on the same data, and are timed after a warm-up. Prints one JSON line each.

  .venv/bin/python benchmarks/bench_train.py                      # CPU, built-in defaults, both paths
  python benchmarks/bench_train.py --device cuda --steps 200 --warmup 20 \
      --data synthetic --overrides experiment=slct backbone=unet_paper data.latent_resolution=32 data.batch_size=128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def lightning_run(cfg, steps: int, warmup: int, device: str) -> dict:
    """Steps/s of trainer.fit between step `warmup` and the end."""
    import lightning as L

    from lct.train.run import build

    marks = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step in (warmup, steps):
                _sync(device)
                marks[trainer.global_step] = time.perf_counter()

    module, dm, trainer, _ = build(cfg)
    trainer.callbacks.append(Clock())
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=dm)
    return {"path": "lightning", "s_per_step": (marks[steps] - marks[warmup]) / (steps - warmup), **_memory(device)}


def plain_update(cfg, f, objective, opt, ema: list, x0: torch.Tensor, k: int, use_amp: bool = False):
    """One training step of network `f` on batch `x0` at global step k, as a bare loop (no Lightning): the
    objective, backward, the optimizer, the objective's updates, the EMA. Returns the loss (detached, on its
    device), or None for a non-finite one, whose step is skipped."""
    from lct import core

    with torch.autocast(x0.device.type, torch.bfloat16, enabled=use_amp):
        out = objective.step(f, x0, k)
    if not out.finite:
        return None
    opt.zero_grad(set_to_none=True)
    out.terms.loss.backward()
    opt.step()
    objective.observe(out)
    objective.after_optimizer_step(f)
    core.ema_update(ema, f.parameters(), core.ema_decay(k, cfg.ema.decays[0], cfg.ema.warmup))
    return out.terms.loss.detach()


def plain_step(cfg, device: str = "cpu"):
    """The training step written as a bare loop (no Lightning): step(k) runs global step k on the next batch."""
    from hydra.utils import instantiate

    from lct.builders import build_datamodule, build_objective, build_student

    dm = build_datamodule(cfg)
    dm.setup("fit")
    f = build_student(cfg).to(device)
    objective = build_objective(cfg, f, cfg.trainer.max_steps, dm.latent_shape).to(device)
    ema = [p.detach().clone() for p in f.parameters()]
    opt = instantiate(cfg.optimizer, _convert_="all")(params=[p for p in f.parameters() if p.requires_grad])
    loader = iter(dm.train_dataloader())
    use_amp = "bf16" in str(cfg.trainer.precision)

    def step(k: int) -> None:
        plain_update(cfg, f, objective, opt, ema, next(loader).to(device, non_blocking=True), k, use_amp)

    step.student = f  # for the callers' parameter counts
    return step


def plain_run(cfg, steps: int, warmup: int, device: str) -> dict:
    """The same step as a bare loop: the reference for the framework's overhead."""
    step = plain_step(cfg, device)
    for k in range(steps):
        if k == warmup:
            _sync(device)
            t0 = time.perf_counter()
        step(k)
    _sync(device)
    return {"path": "plain", "s_per_step": (time.perf_counter() - t0) / (steps - warmup), **_memory(device)}


def _memory(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    return {"peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "gpu": torch.cuda.get_device_name()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--paths", nargs="+", default=["plain", "lightning"])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--overrides", nargs="*", default=[])
    args = ap.parse_args()
    from train_utils import compose_cfg

    accel = ["trainer=gpu_fp32", "trainer.devices=1"] if args.device.startswith("cuda") else []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(
            tmp,
            [
                *accel,
                f"trainer.max_steps={args.steps}",
                "~callbacks.sample_grid",
                "~callbacks.checkpoint",
                "~callbacks.final_checkpoint",
                *args.overrides,
            ],
            data=args.data,
        )
        for path in args.paths:
            torch.manual_seed(0)
            fn = lightning_run if path == "lightning" else plain_run
            result = fn(cfg, args.steps, args.warmup, args.device)
            result.update(
                batch=int(cfg.data.batch_size),
                backbone=cfg.backbone._target_,
                overrides=args.overrides,
                torch=torch.__version__,
                threads=torch.get_num_threads(),
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
