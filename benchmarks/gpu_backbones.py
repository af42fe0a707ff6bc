"""GPU step time of the paper's UNet (NsLN) at the paper's batch: forward + backward + RAdam step.

    python benchmarks/gpu_backbones.py                    # CUDA, batch 128, 4x32x32, fp32 and bf16
    python benchmarks/gpu_backbones.py --device cpu --batch 2 --iters 2 --warmup 1   # smoke test

Needs only torch and lct.nn (the repo's src/ is put on sys.path). Prints one JSON object: per
precision ms/step, samples/s and peak memory, plus the no-grad forward that a consistency-training
step adds for the target f_theta-(x_r, sigma_{i+1}).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from lct.nn import build_backbone, trainable_parameters  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Mean milliseconds per call of fn after warmup calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3 / iters


def measure(args, precision: str) -> dict:
    """Train-step and target-forward timings at one precision ('fp32' or 'bf16' autocast)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    kw = {"norm": args.norm} if args.norm else {}
    model = build_backbone(args.backbone, in_channels=4, resolution=args.resolution, **kw).to(device)
    opt = torch.optim.RAdam(trainable_parameters(model), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(args.batch, 4, args.resolution, args.resolution, device=device)
    c = torch.randn(args.batch, device=device) * 500  # c_noise = 250 ln(sigma) spans about -1554..1096
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def step():
        with amp:
            loss = model(x, c).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def target_forward():
        with amp:
            model(x, c)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_ms = _timed(step, device, args.warmup, args.iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    fwd_ms = _timed(target_forward, device, max(1, args.warmup // 4), args.iters)
    return {
        "step_ms": round(step_ms, 2),
        "samples_per_s": round(args.batch * 1e3 / step_ms, 1),
        "peak_mem_gib": None if peak is None else round(peak, 2),
        "target_forward_ms": round(fwd_ms, 2),
        "ct_step_ms": round(step_ms + fwd_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="unet_paper", help="lct.nn registry name, e.g. dit_B_2")
    parser.add_argument(
        "--norm", default="nsln", help="norm override (the paper's final UNet: nsln); '' keeps the factory's"
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    result = {
        "backbone": args.backbone,
        "norm": args.norm or "default",
        "batch": args.batch,
        "latent": [4, args.resolution, args.resolution],
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "torch": torch.__version__,
        "warmup": args.warmup,
        "iters": args.iters,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    for precision in args.precisions.split(","):
        result[precision] = measure(args, precision)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
