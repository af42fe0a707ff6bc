"""Training-step throughput before (fp32 eager) and after (lct.train.speed's fast path), through the public
entry: compose the Hydra config, `lct.train.run.build(cfg)`, `trainer.fit` with a timing callback.

    python benchmarks/bench_gpu_step.py                   # GPU: the four cases below, ~4 min on an H200
    python benchmarks/bench_gpu_step.py --smoke           # CPU, tiny sizes, no compile: checks the script runs
    python benchmarks/bench_gpu_step.py --cpu --cases tiny_before tiny_after   # torch.compile on the CPU

Cases (each in its own process, so that a failed compile cannot take the other numbers with it):
  paper_before / paper_after  experiment=slct scale=paper backbone=unet_paper, 4x32x32 synthetic latents,
                              batch 128 (exact OT, Cauchy + diffusion loss, EMA): trainer=gpu_fp32 vs trainer=gpu
  tiny_before / tiny_after    the built-in run's step (experiment=cauchy_ot, unet_tiny, 4x8x8, batch 128):
                              trainer=gpu_fp32 vs trainer=gpu with compile_mode=reduce-overhead (CUDA graphs)
Each case: `warmup` steps (compilation included; its estimate is printed separately), `steps` timed steps,
then `profile` steps under torch.profiler (top-10 kernels by device time). Writes to --out (default
$OUT or benchmarks/out): gpu_step.json (all numbers and errors), gpu_profile.txt, gpu_step_log.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOPS_PER_SAMPLE = 4 * 28.3e9  # student forward + backward (~3 forwards) + target forward, paper UNet at 4x32x32
PEAK_BF16 = {"H100": 989.5e12, "H200": 989.5e12}  # dense bf16 tensor-core peak (vendor datasheet)

PAPER = [
    "experiment=slct",
    "scale=paper",
    "backbone=unet_paper",
    "data=synthetic",
    "data.latent_resolution=32",
    "data.batch_size=128",
    "data.num_items=4096",
]
TINY = [
    "experiment=cauchy_ot",
    "backbone=unet_tiny",
    "data=synthetic",
    "data.latent_resolution=8",
    "data.batch_size=128",
    "data.num_items=4096",
]
QUIET = [
    "~callbacks.checkpoint",
    "~callbacks.final_checkpoint",
    "~callbacks.sample_grid",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
]


def cases(mode: str) -> dict:
    """name -> (overrides, warmup, timed steps, profiled steps) for mode gpu | cpu | smoke."""
    if mode == "smoke":  # CPU, tiny sizes; 'after' takes the bf16 + channels_last path without compiling
        small = ["backbone=unet_tiny", "data.latent_resolution=8", "data.batch_size=8", "data.num_items=64"]
        after = ["trainer=cpu", "trainer.precision=bf16-mixed", "trainer.channels_last=true"]
        return {
            "paper_before": ([*PAPER, *small, "trainer=cpu"], 1, 2, 1),
            "paper_after": ([*PAPER, *small, *after], 1, 2, 1),
            "tiny_before": ([*TINY, "data.batch_size=8", "trainer=cpu"], 1, 2, 1),
            "tiny_after": ([*TINY, "data.batch_size=8", *after], 1, 2, 1),
        }
    if mode == "cpu":  # the built-in step on the CPU, eager vs compiled (inductor's C++ backend)
        return {
            "tiny_before": ([*TINY, "trainer=cpu"], 10, 40, 0),
            "tiny_after": ([*TINY, "trainer=cpu", "trainer.compile=true"], 10, 40, 0),
        }
    return {
        "paper_before": ([*PAPER, "trainer=gpu_fp32"], 10, 30, 3),
        "paper_after": ([*PAPER, "trainer=gpu"], 15, 30, 3),
        "tiny_before": ([*TINY, "trainer=gpu_fp32"], 20, 100, 3),
        "tiny_after": ([*TINY, "trainer=gpu", "trainer.compile_mode=reduce-overhead"], 30, 100, 3),
    }


# ---------------------------------------------------------------------------------------------- one case


def run_case(name: str, overrides: list[str], warmup: int, steps: int, profile: int, out: Path) -> dict:
    """Build through lct.train.run.build and fit warmup + steps + profile steps; returns the numbers."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir

    from lct.train.run import build

    cuda = torch.cuda.is_available() and "trainer=cpu" not in overrides
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    total = warmup + steps + profile
    marks: dict = {}
    prof_box: dict = {}

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            sync()
            marks["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, *args):
            step = trainer.global_step
            if step in (1, warmup, warmup + steps):
                sync()
                marks[step] = time.perf_counter()
                marks[f"cpu{step}"] = time.process_time()  # this process's CPU time: independent of host load
                if step == warmup and cuda:
                    torch.cuda.reset_peak_memory_stats()
                if step == warmup + steps and cuda:
                    marks["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            if profile and step == warmup + steps:
                acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
                prof_box["p"] = torch.profiler.profile(activities=acts)
                prof_box["p"].__enter__()
            if profile and step == total:
                sync()
                prof_box["p"].__exit__(None, None, None)

    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    *overrides,
                    *QUIET,
                    f"trainer.max_steps={total}",
                    f"paths.root_dir={tmp}",
                    f"paths.output_dir={tmp}/run",
                ],
            )
        torch.set_float32_matmul_precision("high")  # as `python -m lct.train` (lct.train.run.train) sets
        module, datamodule, trainer, _ = build(cfg)
        trainer.callbacks.append(Clock())
        trainer.fit(module, datamodule=datamodule)

    s_per_step = (marks[warmup + steps] - marks[warmup]) / steps
    batch = int(cfg.data.batch_size)
    result = {
        "overrides": overrides,
        "batch": batch,
        "warmup": warmup,
        "steps": steps,
        "precision": str(cfg.trainer.precision),
        "compile": bool(cfg.trainer.compile),
        "compile_mode": str(cfg.trainer.compile_mode),
        "channels_last": bool(cfg.trainer.channels_last),
        "s_per_step": s_per_step,
        "steps_per_s": 1 / s_per_step,
        "samples_per_s": batch / s_per_step,
        "cpu_s_per_step": (marks[f"cpu{warmup + steps}"] - marks[f"cpu{warmup}"]) / steps,
        "first_step_s": marks[1] - marks["start"],
        "threads": torch.get_num_threads(),
        # Compilation (and cuDNN/allocator warm-up) = warm-up wall time beyond what steady steps would take.
        "compile_s_estimate": (marks[warmup] - marks["start"]) - warmup * s_per_step,
        "peak_mem_gib": marks.get("peak_mem_gib"),
    }
    if cuda:
        peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name()), None)
        if name.startswith("paper") and peak:
            result["tflops"] = result["samples_per_s"] * FLOPS_PER_SAMPLE / 1e12
            result["mfu_vs_bf16_dense_peak"] = result["samples_per_s"] * FLOPS_PER_SAMPLE / peak
    if profile:
        try:  # a profiler problem must not lose the timings above
            sort = "self_device_time_total" if cuda else "self_cpu_time_total"
            table = prof_box["p"].key_averages().table(sort_by=sort, row_limit=10, max_name_column_width=70)
            with open(out / "gpu_profile.txt", "a") as f:
                f.write(f"== {name}: top-10 by {sort}, {profile} steps ({' '.join(overrides)})\n{table}\n")
        except Exception as err:  # noqa: BLE001
            result["profile_error"] = f"{type(err).__name__}: {err}"[:500]
    return result


# ---------------------------------------------------------------------------------------------- driver


def environment() -> dict:
    import torch

    env = {"torch": torch.__version__, "python": sys.version.split()[0], "cuda": torch.cuda.is_available()}
    if env["cuda"]:
        env.update(
            gpu=torch.cuda.get_device_name(), cuda_version=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
    try:
        import lightning

        env["lightning"] = lightning.__version__
    except ImportError:
        pass
    env["threads"] = torch.get_num_threads()
    env["loadavg"] = os.getloadavg()
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, no compile: checks that everything runs")
    ap.add_argument("--cpu", action="store_true", help="the built-in step on the CPU, eager vs torch.compile")
    ap.add_argument("--cases", nargs="+", help="subset of the cases, in this order")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "out"))
    ap.add_argument("--budget-s", type=float, default=235.0, help="wall-clock budget for all cases together")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # child process: run one case
    args = ap.parse_args()
    mode = "smoke" if args.smoke else "cpu" if args.cpu else "gpu"
    table, out = cases(mode), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.case:  # child: one case, its JSON on the last line of stdout
        try:
            result = run_case(args.case, *table[args.case], out)
        except Exception as err:  # noqa: BLE001 -- recorded in the JSON, the driver goes on
            result = {"error": f"{type(err).__name__}: {err}"[:2000], "traceback": traceback.format_exc()[-4000:]}
        print("RESULT " + json.dumps(result), flush=True)
        return

    t0 = time.perf_counter()
    report = {"mode": mode, "environment": environment(), "flops_per_sample": FLOPS_PER_SAMPLE, "cases": {}}
    (out / "gpu_profile.txt").write_text("")
    log = open(out / "gpu_step_log.txt", "w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for name in args.cases or list(table):
        left = args.budget_s - (time.perf_counter() - t0)
        if left < 20:
            report["cases"][name] = {"error": f"skipped: {left:.0f} s of the {args.budget_s:.0f} s budget left"}
            continue
        cmd = (
            [sys.executable, __file__, "--case", name, "--out", str(out)]
            + (["--smoke"] if args.smoke else [])
            + (["--cpu"] if args.cpu else [])
        )
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env, cwd=ROOT)
            log.write(f"===== {name} (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}\n")
            line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
            result = json.loads(line[7:]) if line else {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        except subprocess.TimeoutExpired as err:
            log.write(f"===== {name} (timeout)\n{err.stdout}\n{err.stderr}\n")
            result = {"error": f"timed out after {left:.0f} s (budget)"}
        log.flush()
        result["wall_s"] = time.perf_counter() - t
        report["cases"][name] = result
        _summary(name, result)
        report["total_wall_s"] = time.perf_counter() - t0
        (out / "gpu_step.json").write_text(json.dumps(report, indent=2))  # after every case: a kill keeps the rest
    for kind in ("paper", "tiny"):
        before, after = report["cases"].get(f"{kind}_before", {}), report["cases"].get(f"{kind}_after", {})
        if "samples_per_s" in before and "samples_per_s" in after:
            report[f"{kind}_speedup"] = after["samples_per_s"] / before["samples_per_s"]
            print(f"{kind}: after / before = {report[f'{kind}_speedup']:.2f}x", flush=True)
    report["total_wall_s"] = time.perf_counter() - t0
    (out / "gpu_step.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _summary(name: str, r: dict) -> None:
    if "error" in r:
        print(f"{name:13s} ERROR {r['error'][:300]}", flush=True)
        return
    mfu = f" MFU {100 * r['mfu_vs_bf16_dense_peak']:.1f}%" if "mfu_vs_bf16_dense_peak" in r else ""
    mem = f" peak {r['peak_mem_gib']:.2f} GiB" if r.get("peak_mem_gib") is not None else ""
    print(
        f"{name:13s} {r['s_per_step'] * 1e3:8.1f} ms/step {r['samples_per_s']:9.0f} samples/s{mfu}{mem}"
        f"  compile ~{r['compile_s_estimate']:.0f} s  (case wall {r['wall_s']:.0f} s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
