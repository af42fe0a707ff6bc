"""The ablation study on the built-in data (experiments/ablation/README.md): train each row x seed, score it,
and write everything into results.json; `report` regenerates every table and plot from results.json alone.

    python experiments/ablation/study.py run --rows ilct cauchy_ot --seeds 0 1 2 --workers 2   # what is missing
    python experiments/ablation/study.py report                                              # tables + plots
    python experiments/ablation/study.py sigma-mid --rows slct_noot --seeds 0 1 2    # 2-NFE sigma_mid, dev noise
    make study                                                                               # both, all rows

On a lent GPU, `train` trains without scoring (the FID Inception weights are too large to travel with the
repository) and `pack` writes what the device may return (each run's checkpoint without its optimizer state,
every run's small files); `unpack` puts it back under outputs/study here, and `run` then scores it:

    python experiments/ablation/study.py train --rows slct_noot_20k --seeds 0 --trainer gpu_fp32 --max-time 00:00:07:00
    python experiments/ablation/study.py pack --out $OUT --ckpts slct_noot_20k_seed0    # on the GPU machine
    python experiments/ablation/study.py unpack DIR         # here, then: run --rows slct_noot_20k --seeds 0

A run's directory is outputs/study/<row>/seed<k> (resumable: `lct.train` continues an interrupted run from
its newest checkpoint). Each finished run writes runs/<row>_seed<k>.json at once and results.json is rebuilt
from those files, so a stopped sweep loses at most the runs in flight. Fixed before the first run and never
tuned on: the evaluation noise (sample i uses seed EVAL_SEED + i), the 1,000-digit reference set (REF_SEED)
and the in-loop digit-metric noise (seed 0, conf/callbacks/default.yaml). The 2-NFE sigma_mid sweep
(`sigma-mid`) scores its own noise (DEV_SEED), so an index chosen there is then scored on untouched noise.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lct.core import DEFAULT_NFE
from lct.core.c_schedules import ADAPTIVE_OFFSET

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS_DIR = ROOT / "outputs" / "study"
REFERENCE_DIR = RUNS_DIR  # the cached reference digits and their Inception statistics (whatever the runs dir)
RERUN_DIR = ROOT / "outputs" / "rerun"  # `rerun`'s runs: published runs retrained on this machine
RECORDS = HERE / "runs"
RESULTS = HERE / "results.json"
EVAL_SEED = 10_000  # sample i of the final evaluation uses seed 10,000 + i (the in-loop metric uses 0 + i)
REF_SEED = 0  # the reference digits: a seed-0 permutation of the wheel's 5,000, first 1,000 (class-balanced)
NUM_EVAL = 1000
EDM_NFE = [1, 3, 5, 11, 35]  # Heun: NFE = 2 steps - 1 (digit metrics at each)
EDM_CURVE_NFE = DEFAULT_NFE["diffusion"][-1]  # the in-loop callbacks' multi-step EDM point (Heun)
EDM_INCEPTION_NFE = [1, EDM_CURVE_NFE]  # always scored with Inception FID for the EDM rows
DEV_SEED = 50_000  # the sigma_mid sweep's noise (sample i: seed 50,000 + i), disjoint from EVAL_SEED's 1,000
SIGMA_MID_INDICES = [200, 300, 340, 360, 380, 400, 430, 460, 500]  # of the 641-point grid; 430 = the default
SIGMA_MID = HERE / "sigma_mid.json"
INIT_EDM_STEP = 500  # diffusion-initialised rows: this many EDM steps, then K - 500 consistency steps
DEFAULT_STEPS = 1500  # trainer=cpu's max_steps: every row not setting its own (the GPU trainers derive theirs)

# Row -> Hydra overrides. The chain is the paper's Table 2(a); the c rows test the c hypothesis; the init
# rows start consistency training from the same seed's EDM run at step INIT_EDM_STEP (equal total steps).
# The two rows question 4's variants (batch, lr, EMA, cooldown) are compared between: the baseline and the
# recipe.
ILCT, SLCT_NOOT = ["experiment=ilct"], ["experiment=slct", "coupling=none"]
MAIN_JOB = [*SLCT_NOOT, "optimizer.betas=[0.9,0.99]"]  # `make run`'s recipe: question 4's variants change it
EMA_SUFFIX = "_ema"
ROWS: dict[str, list[str]] = {
    "ilct": ILCT,
    "cauchy": ["experiment=cauchy"],
    "cauchy_diff": ["experiment=cauchy_diff"],
    "cauchy_ot": ["experiment=cauchy_ot"],
    "cauchy_ot_c": ["experiment=cauchy_ot_c"],
    "slct": ["experiment=slct"],
    "cauchy_ot_cfit": ["experiment=cauchy_ot_c", "c_schedule=fitted_mnist"],
    "cauchy_ot_conline": ["experiment=cauchy_ot", "c_schedule=online"],
    # Recipe candidates (question 4): the full method without the component that loses at this scale (OT).
    "slct_noot": SLCT_NOOT,
    "cauchy_diff_c": ["experiment=cauchy_diff", "c_schedule=adaptive"],
    # Is OT too strong at D = 256? Block-4 OT ties x0 to noise about as tightly as whole-batch OT does at the
    # paper's D = 4,096 (docs/method.md, "OT coupling strength").
    "cauchy_ot_block4": ["experiment=cauchy_ot", "coupling=ot_block4"],
    # The same wall time spent differently: batch 64 for 2,600 steps, sized from an uncommitted estimate that a
    # batch-64 step costs ~0.58x a batch-128 one on the 2-core CPU; the records' train minutes are the measurement.
    **{f"{r}_b64": [f"experiment={r}", "data.batch_size=64", "trainer.max_steps=2600"] for r in ("ilct", "slct_noot")},
    # Twice scale=cpu's lr 1e-3, the next point of the calibration's still-improving lr trend (1e-4 -> 3e-4 -> 1e-3:
    # FID 116 -> 92 -> 77, experiments/cpu_calibration), for the recipe and for iLCT (question 4).
    "ilct_lr2e3": [*ILCT, "optimizer.lr=2e-3"],
    "slct_noot_lr2e3": [*SLCT_NOOT, "optimizer.lr=2e-3"],
    # EMA length (question 4): the EMA already beats the online weights by far, and scale=cpu's warm-up w = 10
    # averages about the last 170 of 1,500 steps. One run per seed carries five EMAs of one warm-up w = 3:
    # 0.999 never binds (the iterate of step j weighted ~ j, about the last 750 steps), 0.998 / 0.997 / 0.994 /
    # 0.99 bind from steps 997 / 664 / 331 / 197 on (about the last 500 / 333 / 167 / 100 steps; 0.994 is
    # close to scale=cpu's own EMA at step 1,500). The row scores the first; `evaluate` scores the others.
    # (The recipe only: every longer EMA lost on seed 0, README "The EMA's length".)
    f"slct_noot{EMA_SUFFIX}": [*SLCT_NOOT, "ema.warmup=3", "ema.decays=[0.999,0.998,0.997,0.994,0.99]"],
    # lr cooldown (question 4; beyond the paper, whose lr is constant): linear to 0 over the last 300 steps.
    "slct_noot_cool": [*SLCT_NOOT, "lr_schedule=cooldown"],
    # Adam's second-moment memory (question 4): beta2 = 0.999 remembers ~1,000 steps, three of scale=cpu's
    # 300-step curriculum stages (the paper's 294k-step run: ~1/40 of a stage), while the logged grad norm grows
    # 1.4-3.3x at every stage change (lambda and, for Cauchy with c(N), 1/|d|): the update is oversized for most of
    # each stage. beta2 = 0.99 (~100 steps) brings the memory back under a stage.
    "ilct_beta99": [*ILCT, "optimizer.betas=[0.9,0.99]"],
    "slct_noot_beta99": MAIN_JOB,
    "slct_noot_beta95": [*SLCT_NOOT, "optimizer.betas=[0.9,0.95]"],  # ~20 steps: does the trend go on?
    # The curriculum at the main job's budget (question 4): scale=cpu's s0 = 10, s1 = 160 makes five 300-step stages
    # (N = 11, 21, 41, 81, 161); the calibration chose s1 on cauchy_ot at lr 3e-4 and never varied s0. Fewer, longer
    # stages on the main job: s0 = 20 (four of 375 steps), s0 = 40 (three of 500), s1 = 80 (four of 375, N ends at 81).
    **{
        f"slct_noot_beta99_{k}_{v}": [*MAIN_JOB, f"method.curriculum.{k}={v}"]
        for k, v in (("s0", 20), ("s0", 40), ("s1", 80))
    },
    # Weight decay (question 4): torch's RAdam adds weight_decay * w to the gradient before Adam's normalisation
    # (L2, not decoupled): once a weight's loss gradient falls below 1e-4 |w|, the normalised update carries it
    # toward 0 at up to lr per step, 1e-3 at scale=cpu, ten times the paper's (README "Dead blocks": GroupNorm
    # scales decaying to ~0). Without it (the paper's optimizer otherwise):
    "slct_noot_beta99_wd0": [*MAIN_JOB, "optimizer.weight_decay=0"],
    # The same time spent on a smaller network (question 4): at 1,500 steps the model is far from what it can
    # learn (6,000 steps: 32.2), so a cheaper step may buy more than it costs. Step counts from
    # benchmarks/profile_cpu_step.py's s/step beside the main job's (benchmarks/README.md, "A smaller network").
    "slct_noot_beta99_ch16": [
        *MAIN_JOB,
        "+backbone.model_channels=16",
        "trainer.max_steps=3500",
    ],
    "slct_noot_beta99_nb1": [
        *MAIN_JOB,
        "+backbone.num_blocks=1",
        "trainer.max_steps=2000",
    ],
    # A smaller c (question 4, from question 2): the fitted and the online c, 11-12x the paper's c(N), lost by far,
    # and the paper's c(N) beat iCT's larger constant c with and without OT; does half or a quarter of c(N) gain
    # more? (ln c = slope ln(N-1) + offset: the offset moves by ln 2 or ln 4; the first stage keeps iCT's c.)
    **{
        f"slct_noot_beta99_c{pct:03d}": [
            *MAIN_JOB,
            f"method.c.offset={ADAPTIVE_OFFSET + math.log(pct / 100):.6f}",
        ]
        for pct in (50, 25)
    },
    # The low-noise diffusion loss's weight (question 4): cauchy -> cauchy_diff gained ~1 here against the
    # paper's 4; twice the paper's w = 5.
    "slct_noot_beta99_w10": [*MAIN_JOB, "method.diffusion.weight=10"],
    # lr 2e-3 tied at beta2 = 0.999, where RAdam's rectification held the step at 0.05-0.75 of the lr for the
    # whole run; with beta2 = 0.99 the whole lr is applied from step ~500 on, so the lr trend may differ.
    "slct_noot_beta99_lr2e3": [*MAIN_JOB, "optimizer.lr=2e-3"],
    # How many steps the goal (FID <= 40) takes: the recipe between the main job's 1,500 and 6,000 steps (the
    # curriculum and EMA warm-up stretched with the steps, as for every length), i.e. the step throughput that
    # `make run`'s 10 minutes would need.
    **{
        f"slct_noot_beta99_{name}": [*MAIN_JOB, f"trainer.max_steps={steps}"]
        for name, steps in (("2k", 2000), ("2k5", 2500))
    },
    "ilct_2k5": [*ILCT, "trainer.max_steps=2500"],  # the baseline at that length
    "slct_beta99": ["experiment=slct", "optimizer.betas=[0.9,0.99]"],  # and with OT: the paper's full method
    "cauchy_ot_beta99": ["experiment=cauchy_ot", "optimizer.betas=[0.9,0.99]"],  # the former main job
    # NsLN alone on iCT (question 2): with GroupNorm, the scales of the lowest-resolution blocks decay to ~0 and the
    # blocks die (iLCT and EDM by step 3,500 of the 20,000-step schedule); NsLN's scale is frozen at 1 (README,
    # "Dead blocks").
    "ilct_nsln": [*ILCT, "norm=nsln"],
    # The baseline without weight decay (question 2's fairness check): at scale=cpu's lr 1e-3 the decay kills iLCT's
    # low-resolution GroupNorm blocks on the 20,000-step schedule and `ilct_wd0_20k` keeps them alive (README "Dead
    # blocks"); is the 1,500-step baseline held back by it too?
    "ilct_wd0": [*ILCT, "optimizer.weight_decay=0"],
    "edm": ["experiment=edm", "callbacks.checkpoint.save_top_k=-1"],
    "ilct_init": ["experiment=ilct", "trainer.max_steps=1000"],
    "cauchy_ot_init": ["experiment=cauchy_ot", "trainer.max_steps=1000"],
    # Question 3, does the ordering turn with training length: 4x the budget (the curriculum stretches with it),
    # and the 20,000 steps where a GPU is lent (`train` there). Not in the default sweep.
    **{f"{r}_6k": [f"experiment={r}", "trainer.max_steps=6000"] for r in ("ilct", "slct_noot", "slct", "edm")},
    **{f"{r}_20k": [f"experiment={r}", "trainer.max_steps=20000"] for r in ("ilct", "slct_noot", "slct", "edm")},
    # Dead blocks (README "Dead blocks"): iLCT's GroupNorm scales of the lowest-resolution blocks decay to ~0 by
    # step 3,500 of this schedule. Without weight decay (torch's RAdam adds it to the gradient before Adam's
    # normalisation, so at lr 1e-3 it moves a scale with no gradient by up to lr per step), do they live? Every
    # 1,000-step checkpoint kept for dead_blocks.py.
    "ilct_wd0_20k": [
        *ILCT,
        "trainer.max_steps=20000",
        "optimizer.weight_decay=0",
        "callbacks.checkpoint.every_n_train_steps=1000",
        "callbacks.checkpoint.save_top_k=-1",
    ],
    # Does beta2 = 0.99 still help when a curriculum stage lasts 1,200 steps (question 4 at question 3's length)?
    "slct_noot_beta99_6k": [*MAIN_JOB, "trainer.max_steps=6000"],
}
LONG_SUFFIXES = ("_6k", "_20k")
DEFAULT_ROWS = [r for r in ROWS if not r.endswith(LONG_SUFFIXES)]
DEVICE_RECORD = "device.json"  # written by `train`: where and how a run trained, for the record `run` writes
PAPER = {  # CelebA-HQ 256, epoch 1400: Table 2(a) (1 NFE FID, recall); 2 NFE from Table 1 where given (docs/method.md)
    "ilct": (37.15, 0.12, 16.84),
    "cauchy": (13.02, 0.36, None),
    "cauchy_diff": (9.11, 0.41, None),
    "cauchy_ot": (8.89, 0.42, None),
    "cauchy_ot_c": (7.76, 0.47, None),
    "slct": (7.27, 0.50, 6.93),
}
ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_WAIT_POLICY": "PASSIVE"}


def is_edm(row: str) -> bool:
    """The EDM rows (edm, edm_6k): diffusion models, scored with Heun at EDM_NFE instead of 1 and 2 steps."""
    return row == "edm" or row.startswith("edm_")


def long_suffix(row: str) -> str | None:
    """A question-3 long row's suffix (_6k, _20k); None for the other rows."""
    return next((s for s in LONG_SUFFIXES if row.endswith(s)), None)


def base_row(row: str) -> str | None:
    """The 1,500-step row a question-3 long row stretches (ilct_6k -> ilct); None for the other rows."""
    suffix = long_suffix(row)
    return row.removesuffix(suffix) if suffix else None


# The variants that change only the step count (not the wall time): compared with iLCT of their own length.
LENGTH_VARIANTS = ("_2k", "_2k5")
# Question 4's variants: a row `<base><suffix>` changes one training setting of row `<base>` (the same seeds).
VARIANT_SUFFIXES = (
    "_b64",
    "_lr2e3",
    "_cool",
    "_beta99",
    "_beta95",
    "_s0_20",
    "_s0_40",
    "_s1_80",
    "_wd0",
    "_ch16",
    "_nb1",
    "_c050",
    "_c025",
    "_w10",
    *LENGTH_VARIANTS,
)


def variant_base(row: str) -> str | None:
    """The row a question-4 variant changes one setting of (slct_noot_beta99 -> slct_noot; at a long row's
    length, slct_noot_beta99_6k -> slct_noot_6k); None otherwise."""
    length = long_suffix(row) or ""
    stem = row.removesuffix(length)
    suffix = next((s for s in VARIANT_SUFFIXES if stem.endswith(s)), None)
    return stem.removesuffix(suffix) + length if suffix and row in ROWS else None


def base_ema_row(row: str) -> str | None:
    """The row whose EMA an EMA-length row varies (slct_noot_ema -> slct_noot); None for the other rows."""
    return row.removesuffix(EMA_SUFFIX) if row.endswith(EMA_SUFFIX) and row in ROWS else None


def run_dir(row: str, seed: int) -> Path:
    return RUNS_DIR / row / f"seed{seed}"


def edm_init_ckpt(seed: int) -> Path:
    return run_dir("edm", seed) / "checkpoints" / f"epoch=0-step={INIT_EDM_STEP}.ckpt"


def row_steps(row: str) -> int:
    """The row's training steps: its own trainer.max_steps override, else DEFAULT_STEPS."""
    own = [int(o.split("=", 1)[1]) for o in ROWS[row] if o.startswith("trainer.max_steps=")]
    return own[-1] if own else DEFAULT_STEPS


def overrides(row: str, seed: int, trainer: str | None = None) -> list[str]:
    """The row's `python -m lct.train` overrides; `trainer` (e.g. gpu_fp32) swaps the trainer config and pins
    the row's step count, which the GPU trainers would otherwise derive from epochs. The run directory last."""
    # Quoted: Lightning's checkpoint names (epoch=0-step=500.ckpt) hold '=', which Hydra's override grammar rejects.
    extra = [f'init_from="{edm_init_ckpt(seed)}"'] if row.endswith("_init") else []
    if trainer:
        extra += [f"trainer={trainer}", f"trainer.max_steps={row_steps(row)}"]
    return [*ROWS[row], *extra, f"seed={seed}", f"hydra.run.dir={run_dir(row, seed)}"]


def launch(cmd: list[str], threads: int, log_path: Path | None) -> None:
    """Run an lct command from the repository root with `threads` torch threads, offline; output to log_path."""
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log_path or os.devnull, "a") as f:
        subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)


def device_info(threads: int, trainer: str | None = None) -> dict:
    """Where the run trained: the GPU's name under a GPU trainer, else the CPU's model and core count."""
    if trainer and trainer.startswith("gpu"):
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unavailable"
        return {"device": f"gpu: {name} ({trainer})", "threads": threads, "host": platform.node()}
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"device": f"cpu: {cpu}, {os.cpu_count()} cores", "threads": threads, "host": platform.node()}


# ---------------------------------------------------------------------------------------------------
# One run: train (skipped when last.ckpt exists), evaluate, collect the logged curves, write the record.


def train(
    row: str, seed: int, threads: int, log, trainer: str | None = None, extra: list[str] = (), max_time: str = ""
) -> None:
    """Train unless done (its last.ckpt exists); the wall time is read from the run's files (train_wall_time).
    `extra` overrides and a `max_time` (Lightning's DD:HH:MM:SS: the run stops there with its last.ckpt, the
    curriculum still that of the row's steps) mark the run as trained by `study.py train`: its DEVICE_RECORD
    keeps them, the device and the wall time for the record that `run` writes wherever it is scored."""
    out = run_dir(row, seed)
    if (out / "checkpoints" / "last.ckpt").exists():
        return
    if row.endswith("_init") and not edm_init_ckpt(seed).exists():
        raise RuntimeError(f"{row} seed {seed} needs {edm_init_ckpt(seed)}: run row edm seed {seed} first")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = overrides(row, seed, trainer)
    cmd[-1:-1] = [*extra, *([f'+trainer.max_time="{max_time}"'] if max_time else [])]  # the run dir stays last
    t0 = time.time()
    try:
        launch(["lct.train", *cmd], threads, out.parent / f"seed{seed}.train.log")
    finally:
        if extra or max_time or trainer:
            info = {**device_info(threads, trainer), "overrides": cmd[:-1], "train_wall_s": round(time.time() - t0, 1)}
            out.mkdir(parents=True, exist_ok=True)
            (out / DEVICE_RECORD).write_text(json.dumps(info, indent=1))
    log(f"{row} seed {seed}: trained in {time.time() - t0:.0f} s")


def reference_images() -> Path:
    """The fixed 1,000 real digits (REF_SEED), written once under outputs/study."""
    import numpy as np

    from lct.data.sources import load_mnist

    path = REFERENCE_DIR / f"mnist_ref1000_seed{REF_SEED}.npy"
    if not path.exists():
        x, _ = load_mnist()
        idx = np.random.default_rng(REF_SEED).permutation(len(x))[:1000]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x[idx][:, None])
    return path


def reference_flags() -> list[str]:
    """lct.evaluate's Inception reference: the fixed 1,000 digits, their statistics cached under outputs/study."""
    reference = ["--reference-images", str(reference_images()), "--num-reference", "1000", "--kid-subset-size", "500"]
    return [*reference, "--reference", str(REFERENCE_DIR / f"reference_ref1000_seed{REF_SEED}.pt")]


def _evaluate(
    row: str, seed: int, threads: int, out: str, nfe: list[int], flags: list[str], noise_seed: int = EVAL_SEED
) -> dict:
    """One `lct.evaluate` call on the run's last.ckpt (skipped when its metrics.json exists)."""
    out = run_dir(row, seed) / out
    if not (out / "metrics.json").exists():
        cmd = ["lct.evaluate", str(run_dir(row, seed) / "checkpoints" / "last.ckpt"), "--out", str(out)]
        cmd += ["--num-samples", str(NUM_EVAL), "--seed", str(noise_seed), "--no-progress", "--nfe", *map(str, nfe)]
        launch([*cmd, *flags], threads, run_dir(row, seed).parent / f"seed{seed}.eval.log")
    return json.loads((out / "metrics.json").read_text())


def evaluate(row: str, seed: int, threads: int, inception_nfe: list[int]) -> dict:
    """EMA weights: Inception FID/KID/P/R at `inception_nfe` (about 0.3 CPU-s per sample on a 2-core host),
    digit metrics at every NFE; online weights: digit metrics. Each part is cached in its own directory."""
    edm = is_edm(row)
    nfe = EDM_NFE if edm else [1, 2]
    inception_nfe = [n for n in nfe if n in inception_nfe or (edm and n in EDM_INCEPTION_NFE)]
    reference = reference_flags()
    if (run_dir(row, seed) / "eval" / "metrics.json").exists():  # written by an earlier sweep
        ema = _evaluate(row, seed, threads, "eval", [], [])
    else:
        ema = _evaluate(row, seed, threads, "eval", inception_nfe, ["--metrics", "inception,digit", *reference])
    results, digits = {**ema.get("results", {})}, {**ema.get("digits", {})}
    for n in [n for n in inception_nfe if f"{n}nfe" not in results]:  # asked for after the first scoring
        results.update(
            _evaluate(row, seed, threads, f"eval_{n}nfe", [n], ["--metrics", "inception", *reference])["results"]
        )
    rest = [n for n in nfe if f"{n}nfe" not in digits]
    if rest:
        digits.update(_evaluate(row, seed, threads, "eval_digits", rest, ["--metrics", "digit"])["digits"])
    online = _evaluate(row, seed, threads, "eval_online", nfe, ["--metrics", "digit", "--no-ema"])
    metrics = {"results": results, "digits": digits, "digits_online": online["digits"]}
    for d in run_ema_decays(row, seed)[1:]:  # the run's other EMAs: 1 NFE, Inception and digits, like the first
        flags = ["--metrics", "inception,digit", "--ema-decay", str(d), *reference]
        m = _evaluate(row, seed, threads, f"eval_ema{d}", [1], flags)
        metrics.setdefault("emas", {})[str(d)] = {"results": m["results"], "digits": m["digits"]}
    return metrics


def run_ema_decays(row: str, seed: int) -> list[float]:
    """The run's ema.decays, from its resolved config (the first is the one every score without a decay uses)."""
    import yaml

    config = yaml.safe_load((run_dir(row, seed) / "config_resolved.yaml").read_text())
    return list(config["ema"]["decays"])


def grid(row: str, seed: int, threads: int) -> None:
    """64 one-step EMA samples from the evaluation's first 64 noises: grids/<row>_seed<k>.png."""
    dest = HERE / "grids" / f"{row}_seed{seed}.png"
    if dest.exists():
        return
    out = run_dir(row, seed) / "grid"
    ckpt = run_dir(row, seed) / "checkpoints" / "last.ckpt"
    cmd = ["lct.sample", str(ckpt), "--num-samples", "64", "--nfe", "1", "--no-png"]
    launch([*cmd, "--seed", str(EVAL_SEED), "--out", str(out)], threads, None)
    dest.parent.mkdir(exist_ok=True)
    dest.write_bytes((out / "grid.png").read_bytes())


def logged_curves(row: str, seed: int) -> dict:
    """Every logged column of the run's metrics.csv as {column: [[step, value], ...]} (empty cells dropped)."""
    return csv_curves(run_dir(row, seed) / "csv" / "version_0" / "metrics.csv")


def summed_clock(ckpt: dict) -> float | None:
    """The seconds of training lct.train keeps in a checkpoint, summed over every attempt of the run (a run
    resumed in a later session too); None for a checkpoint without it or whose clock started at a resume."""
    state = ckpt.get("lct", {})
    return float(state["train_seconds"]) if "train_seconds" in state and state["timed_from_step"] == 0 else None


def train_wall_time(row: str, seed: int, ckpt: dict) -> float:
    """Seconds of training: the checkpoint's summed clock (summed_clock); for a checkpoint without it, seconds
    from the run's resolved config (rewritten at each attempt) to last.ckpt: the last attempt's."""
    if (clock := summed_clock(ckpt)) is not None:
        return clock
    out = run_dir(row, seed)
    return (out / "checkpoints" / "last.ckpt").stat().st_mtime - (out / "config_resolved.yaml").stat().st_mtime


def run_one(row: str, seed: int, threads: int, inception_nfe: list[int], log, trainer: str | None = None) -> dict:
    import yaml

    train(row, seed, threads, log, trainer)
    from lct.ckpt_io import read_checkpoint_file

    ckpt = read_checkpoint_file(run_dir(row, seed) / "checkpoints" / "last.ckpt")
    step = int(ckpt["global_step"])
    if step < row_steps(row):  # e.g. stopped by --max-time on a device: not a record of the row
        raise RuntimeError(f"{row} seed {seed} stopped at step {step} of {row_steps(row)}: `study.py score` scores it")
    t0 = time.time()
    metrics = evaluate(row, seed, threads, inception_nfe)
    log(f"{row} seed {seed}: evaluated in {time.time() - t0:.0f} s")
    grid(row, seed, threads)
    config = yaml.safe_load((run_dir(row, seed) / "config_resolved.yaml").read_text())
    # Where it trained: as `train` recorded it (e.g. on a lent GPU), else this machine.
    if (run_dir(row, seed) / DEVICE_RECORD).exists():
        trained = json.loads((run_dir(row, seed) / DEVICE_RECORD).read_text())
        trained["scored_on"] = device_info(threads)["device"]
        if (clock := summed_clock(ckpt)) is not None:  # the record's wall time is the last `train` call's
            trained["train_wall_s"] = round(clock, 1)
    else:
        trained = {
            "overrides": overrides(row, seed, trainer)[:-1],  # without the machine-specific run directory
            "train_wall_s": round(train_wall_time(row, seed, ckpt), 1),
            **device_info(threads, trainer),
        }
    record = {
        "row": row,
        "seed": seed,
        "overrides": trained.pop("overrides"),
        "steps": step,
        "init_edm_steps": INIT_EDM_STEP if row.endswith("_init") else 0,
        **trained,
        "eval": {"num_samples": NUM_EVAL, "seed": EVAL_SEED, "reference": f"ref1000 seed {REF_SEED}"},
        "metrics": metrics,
        "curves": logged_curves(row, seed),
        "config": config,
    }
    RECORDS.mkdir(exist_ok=True)
    tmp = RECORDS / f".{row}_seed{seed}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(RECORDS / f"{row}_seed{seed}.json")
    merge()
    log(f"{row} seed {seed}: 1-NFE FID {metrics['results']['1nfe']['fid']:.1f}")
    return record


def study_order(row: str, seed: int) -> tuple[int, int]:
    """Sort key of results.json and sigma_mid.json: the order of ROWS (unknown rows last), then seed."""
    return list(ROWS).index(row) if row in ROWS else len(ROWS), seed


def read_records() -> list[dict]:
    """Every record under runs/ (one per scored run)."""
    return [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]


_MERGE_LOCK = threading.Lock()


def merge() -> list[dict]:
    """results.json = every record under runs/, sorted by row order then seed."""
    # A `run`'s workers are threads of one process: one merge at a time within it. Across processes (two study
    # commands at once), one temporary name per process: each replaces results.json whole.
    with _MERGE_LOCK:
        records = sorted(read_records(), key=lambda r: study_order(r["row"], r["seed"]))
        tmp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runs": records}, indent=1))
        tmp.replace(RESULTS)
    return records


def sigma_mid_sweep(row: str, seed: int, threads: int, score_index: int | None = None) -> dict:
    """Digit FID / legibility of 1,000 EMA samples of DEV_SEED noise at 1 NFE and at 2 NFE for every
    SIGMA_MID_INDICES point (`lct.evaluate --metrics digit --search`, about 2 CPU-minutes per run); with
    score_index, also the 2-NFE Inception FID and digit metrics at that index on the evaluation noise."""
    flags = ["--metrics", "digit", "--search", "--search-indices", *map(str, SIGMA_MID_INDICES)]
    m = _evaluate(row, seed, threads, "sigma_mid", [1], flags, noise_seed=DEV_SEED)
    keep = ("index", "sigma_mid", "fid", "legible", "coverage")
    one = m["digits"]["1nfe"]
    entry = {
        "row": row,
        "seed": seed,
        "1nfe": {k: one[k] for k in ("fid", "legible", "coverage")},
        "curve": [{k: c[k] for k in keep} for c in m["search"]["curve"]],
    }
    if score_index is not None:
        flags = ["--metrics", "inception,digit", *reference_flags(), "--sigma-mid-index", str(score_index)]
        e = _evaluate(row, seed, threads, f"eval_2nfe_mid{score_index}", [2], flags)
        inception, digits = e["results"]["2nfe"], e["digits"]["2nfe"]
        entry["scored"] = {
            "index": score_index,
            "sigma_mid": inception["sigmas"][1],
            "noise_seed": EVAL_SEED,
            **{k: inception[k] for k in ("fid", "precision", "recall")},
            **{f"digit_{k}": digits[k] for k in ("fid", "legible", "coverage")},
        }
    return entry


def cmd_sigma_mid(args) -> None:
    """sigma_mid.json: the sweep for each finished consistency run of --rows x --seeds (kept entries stay)."""
    old = json.loads(SIGMA_MID.read_text())["runs"] if SIGMA_MID.exists() else []
    jobs = [(r, s) for r in args.rows for s in args.seeds if not is_edm(r)]
    jobs = [(r, s) for r, s in jobs if (run_dir(r, s) / "checkpoints" / "last.ckpt").exists()]
    print(f"sigma_mid sweep of {len(jobs)} run(s): {jobs}", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        new = list(pool.map(lambda j: sigma_mid_sweep(*j, args.threads, args.score_index), jobs))
    runs = {(e["row"], e["seed"]): e for e in old}
    for e in new:  # a rerun without --score-index keeps an entry's earlier scoring
        runs[e["row"], e["seed"]] = {**runs.get((e["row"], e["seed"]), {}), **e}
    runs = [runs[k] for k in sorted(runs, key=lambda k: study_order(*k))]
    meta = {"noise_seed": DEV_SEED, "num_samples": NUM_EVAL, "metric": "digit FID (lct.eval.digits), EMA weights"}
    SIGMA_MID.write_text(json.dumps({**meta, "runs": runs}, indent=1))
    print(f"wrote {SIGMA_MID}")


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def each_run(jobs: list[tuple[str, int]], workers: int, fn) -> None:
    """fn(row, seed) for every job, `workers` at a time; one failed run does not stop the others (its log says why)."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, r, s) for r, s in jobs]
        for (r, s), fut in zip(jobs, futures, strict=True):
            try:
                fut.result()
            except Exception as exc:
                log(f"{r} seed {s} FAILED: {exc}")


def cmd_train(args) -> None:
    """Train --rows x --seeds without scoring (e.g. on a lent GPU, where the Inception weights are absent)."""
    jobs = [(r, s) for s in args.seeds for r in args.rows]
    log(f"training {len(jobs)} run(s) under {RUNS_DIR}: {jobs}")
    each_run(jobs, args.workers, lambda r, s: train(r, s, args.threads, log, args.trainer, args.extra, args.max_time))


def headline_nfe(row: str) -> int:
    """The NFE a row is published and followed at: 1, except the EDM rows' Heun EDM_CURVE_NFE (their own
    sampler's; one Euler step of a diffusion model says nothing about how far its training has got)."""
    return EDM_CURVE_NFE if is_edm(row) else 1


def headline_fid(row: str, metrics: dict) -> float:
    """The number a row is published by: Inception FID at its headline_nfe."""
    return metrics["results"][f"{headline_nfe(row)}nfe"]["fid"]


def published_records() -> dict[tuple[str, int], dict]:
    """The study's records (runs/*.json) by (row, seed)."""
    return {(r["row"], r["seed"]): r for r in read_records()}


def pooled_std(published: dict, steps: int) -> float | None:
    """The run-to-run std of the headline FID pooled over every published row of `steps` steps with >= 2 seeds:
    sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)). Three seeds estimate one row's std poorly (its 95% upper bound is
    ~4.4x the sample std); pooled over the rows of one length, it is the spread a rerun elsewhere should meet."""
    by_row: dict[str, list[float]] = {}
    for (row, _), r in published.items():
        if r.get("steps") == steps:
            by_row.setdefault(row, []).append(headline_fid(row, r["metrics"]))
    groups = [v for v in by_row.values() if len(v) > 1]
    dof = sum(len(v) - 1 for v in groups)
    return (sum((len(v) - 1) * statistics.variance(v) for v in groups) / dof) ** 0.5 if dof else None


def rerun_comparison(row: str, seed: int, fid: float, device: str, published: dict) -> dict:
    """A rerun's headline FID against the published record of the same run and the row's published seeds:
    `within_row` when it lies inside the row's mean +- 2 std (>= 2 seeds, else None), `within_pooled` inside the
    row's mean +- 2 pooled_std of its length (else +- 2 FID)."""
    same = published[(row, seed)]
    seeds = [headline_fid(row, r["metrics"]) for (rw, _), r in published.items() if rw == row]
    mean = statistics.mean(seeds)
    std = statistics.stdev(seeds) if len(seeds) > 1 else None
    pooled = pooled_std(published, same.get("steps"))
    return {
        "row": row,
        "seed": seed,
        "rerun_fid": round(fid, 2),
        "rerun_device": device,
        "published_fid": round(headline_fid(row, same["metrics"]), 2),
        "published_device": same.get("device"),
        "row_seeds": len(seeds),
        "row_mean": round(mean, 2),
        "row_std": None if std is None else round(std, 2),
        "pooled_std": None if pooled is None else round(pooled, 2),
        "within_row": None if std is None else abs(fid - mean) <= 2 * std,
        "within_pooled": abs(fid - mean) <= 2 * (pooled if pooled is not None else 1.0),
    }


def cmd_rerun(args) -> None:
    """The issue's check as one command: retrain published runs (--rows x --seeds) on this machine under
    outputs/rerun (the study's own runs and records stay untouched), score them with `run`'s evaluation and
    write each one's comparison with its published record to --out (rerun_comparison)."""
    published = published_records()
    jobs = [(r, s) for s in args.seeds for r in args.rows]
    if missing := [j for j in jobs if j not in published]:
        raise SystemExit(f"no published record (experiments/ablation/runs) for {missing}")
    log(f"rerunning {len(jobs)} run(s) under {RUNS_DIR}: {jobs}")
    rows: list[dict] = []

    def one(row: str, seed: int) -> None:
        from lct.ckpt_io import read_checkpoint_file

        train(row, seed, args.threads, log)
        ckpt = read_checkpoint_file(run_dir(row, seed) / "checkpoints" / "last.ckpt")
        if (step := int(ckpt["global_step"])) < row_steps(row):
            raise RuntimeError(f"{row} seed {seed} stopped at step {step} of {row_steps(row)}")
        fid = headline_fid(row, evaluate(row, seed, args.threads, [1]))
        here = {"rerun_train_wall_s": round(train_wall_time(row, seed, ckpt), 1), "rerun_threads": args.threads}
        rows.append({**rerun_comparison(row, seed, fid, device_info(args.threads)["device"], published), **here})
        log(f"{row} seed {seed}: rerun FID {fid:.1f}, published {rows[-1]['published_fid']:.1f}")

    each_run(jobs, args.workers, one)
    out = Path(args.out)
    kept = json.loads(out.read_text())["runs"] if out.exists() else []
    fresh = {(r["row"], r["seed"]) for r in rows}
    merged = [r for r in kept if (r["row"], r["seed"]) not in fresh] + rows
    merged.sort(key=lambda r: study_order(r["row"], r["seed"]))
    out.write_text(json.dumps({"runs": merged}, indent=1))
    verdict = {True: "within", False: "OUTSIDE", None: "no spread"}
    for r in merged:
        print(
            f"{r['row']} seed {r['seed']}: {r['rerun_fid']} here vs {r['published_fid']} published; row mean "
            f"{r['row_mean']} ± {r['row_std']} ({verdict[r['within_row']]} 2 std), pooled std {r['pooled_std']} "
            f"({verdict[r['within_pooled']]} 2 pooled std)"
        )


SCORE = "score.json"  # written by `score` into a stopped run's directory; `collect` carries it


def cmd_score(args) -> None:
    """Score runs `train` stopped before their steps (e.g. by --max-time on a lent GPU) at the step they reached,
    without training them further: `run`'s evaluation (cached under the run dir) -> <run dir>/score.json."""
    from lct.ckpt_io import read_checkpoint_file

    def score(row: str, seed: int) -> None:
        step = int(read_checkpoint_file(run_dir(row, seed) / "checkpoints" / "last.ckpt")["global_step"])
        t0 = time.time()
        metrics = evaluate(row, seed, args.threads, args.inception_nfe)
        wall = round(time.time() - t0, 1)
        (run_dir(row, seed) / SCORE).write_text(json.dumps({"step": step, "eval_wall_s": wall, "metrics": metrics}))
        fid = metrics["results"]["1nfe"]["fid"]
        log(f"{row} seed {seed}: scored at step {step} in {wall:.0f} s, 1-NFE FID {fid:.1f}")

    each_run([(r, s) for s in args.seeds for r in args.rows], args.workers, score)


def newest_checkpoint(run: Path) -> Path | None:
    """A run dir's last.ckpt, else its newest periodic checkpoint (a run stopped from outside), else None."""
    ckpts = run / "checkpoints"
    if (ckpts / "last.ckpt").exists():
        return ckpts / "last.ckpt"
    found = sorted(ckpts.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def cmd_pack(args) -> None:
    """What a device may return: for each of --ckpts (<row>_seed<k>) the checkpoint with the most steps among
    --runs-dirs, without its optimizer state (15 MB gzipped for unet_tiny), as OUT/<row>_seed<k>.ckpt.gz; every
    run dir's other files (configs, logs, metrics.csv, DEVICE_RECORD) as OUT/runs.tar.gz; OUT/pack.json: which."""
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(d).resolve() for d in args.runs_dirs]
    chosen = {}
    for name in args.ckpts:
        row, seed = name.rsplit("_seed", 1)
        best = None
        for root in roots:
            path = newest_checkpoint(root / row / f"seed{seed}")
            if path:
                ckpt = torch.load(path, map_location="cpu", weights_only=False)  # our own file, just written
                if best is None or ckpt["global_step"] > best[1]["global_step"]:
                    best = (root, ckpt, path)
        if best is None:
            print(f"pack: no checkpoint for {name}", flush=True)
            continue
        root, ckpt, path = best
        ckpt.pop("optimizer_states", None)  # scoring needs the weights and lct's metadata, not RAdam's moments
        with gzip.open(out / f"{name}.ckpt.gz", "wb", compresslevel=6) as f:  # ~10% smaller: four fit in 64 MiB
            torch.save(ckpt, f)
        chosen[name] = {"runs_dir": root.name, "from": path.name, "global_step": int(ckpt["global_step"])}
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for root in roots:
            for f in sorted(f for row in args.rows or ["."] for f in (root / row).rglob("*")):
                if f.is_file() and f.suffix not in (".ckpt", ".pt", ".npy") and ".hydra" not in f.parts:
                    tar.add(f, arcname=str(Path(root.name) / f.relative_to(root)))
    (out / "pack.json").write_text(json.dumps({"checkpoints": chosen}, indent=1))
    print(json.dumps(chosen, indent=1), flush=True)


def cmd_unpack(args) -> None:
    """A `pack` output back into outputs/: every runs dir beside outputs/study, each packed checkpoint as
    last.ckpt of its run under outputs/study (moved there with its run's files when another runs dir had it)."""
    src = Path(args.dir)
    chosen = json.loads((src / "pack.json").read_text())["checkpoints"]
    base = RUNS_DIR.parent
    with tarfile.open(src / "runs.tar.gz") as tar:
        tar.extractall(base, filter="data")
    for name, info in chosen.items():
        row, seed = name.rsplit("_seed", 1)
        dest = run_dir(row, int(seed))
        if info["runs_dir"] != RUNS_DIR.name:  # the run that got furthest trained under another runs dir
            if dest.exists():
                shutil.rmtree(dest.with_name(dest.name + ".other"), ignore_errors=True)
                dest.rename(dest.with_name(dest.name + ".other"))
            shutil.copytree(base / info["runs_dir"] / row / f"seed{seed}", dest)
        (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
        with gzip.open(src / f"{name}.ckpt.gz") as f, open(dest / "checkpoints" / "last.ckpt", "wb") as g:
            shutil.copyfileobj(f, g)
        print(f"{name}: step {info['global_step']} from {info['runs_dir']} -> {dest}", flush=True)


def csv_curves(path: Path) -> dict:
    """Every logged column of a metrics.csv as {column: [[step, value], ...]} (empty cells dropped)."""
    curves: dict[str, list] = {}
    with open(path) as f:
        for rec in csv.DictReader(f):
            for key, value in rec.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                curves.setdefault(key, []).append([int(rec["step"]), float(value)])
    return curves


def cmd_collect(args) -> None:
    """The runs `train` left under --runs-dirs (scored or not, finished or stopped by --max-time) as one JSON:
    per run its row, seed, variant (compiled / eager), last logged step, device, overrides, wall time and every
    logged curve. For runs that did not reach their steps, whose checkpoints the report cannot score."""
    from lct.ckpt_io import read_checkpoint_file

    runs = []
    for root in map(Path, args.runs_dirs):
        for info_path in sorted(p for row in args.rows for p in (root / row).glob(f"seed*/{DEVICE_RECORD}")):
            info = json.loads(info_path.read_text())
            last = info_path.parent / "checkpoints" / "last.ckpt"
            if last.exists() and (clock := summed_clock(read_checkpoint_file(last, mmap=True))) is not None:
                info["train_wall_s"] = round(clock, 1)  # over every attempt, not the last `train` call's
            curves = csv_curves(info_path.parent / "csv" / "version_0" / "metrics.csv")
            seed = next(int(o.split("=", 1)[1]) for o in info["overrides"] if o.startswith("seed="))
            runs.append(
                {
                    "row": info_path.parent.parent.name,
                    "seed": seed,
                    "variant": "compiled" if "trainer.compile=true" in info["overrides"] else "eager",
                    "steps": max(s for c in curves.values() for s, _ in c),
                    "row_steps": row_steps(info_path.parent.parent.name),
                    **info,
                    "curves": curves,
                }
            )
            if (info_path.parent / SCORE).exists():  # scored at the step it stopped at (`score`)
                runs[-1]["score"] = json.loads((info_path.parent / SCORE).read_text())
    unique = {(r["row"], r["seed"], r["variant"]): r for r in reversed(runs)}  # a run unpacked twice: the first
    runs = sorted(unique.values(), key=lambda r: (*study_order(r["row"], r["seed"]), r["variant"]))
    Path(args.out).write_text(json.dumps({"runs": runs}))
    print(f"wrote {args.out}: {len(runs)} run(s)")


def cmd_run(args) -> None:
    done = {(r["row"], r["seed"]) for r in (merge() if RECORDS.exists() else [])}
    jobs = [(r, s) for s in args.seeds for r in args.rows if args.force or (r, s) not in done]
    # EDM rows first (stable otherwise): the init rows of the same seed start from its step-500 checkpoint.
    jobs.sort(key=lambda j: j[0] != "edm")
    log(f"{len(jobs)} run(s) to do: {jobs}")
    each_run(jobs, args.workers, lambda r, s: run_one(r, s, args.threads, args.inception_nfe, log, args.trainer))


def jobs_args(parser: argparse.ArgumentParser, workers: int) -> None:
    """--rows (required) x --seeds (default 0), run `workers` at a time with --threads torch threads each."""
    parser.add_argument("--rows", nargs="+", required=True, choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--threads", type=int, default=1)


def main() -> None:
    global RUNS_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="train + evaluate the rows x seeds missing from results.json")
    run.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=list(ROWS), help="default: all but *_6k")
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--workers", type=int, default=2, help="runs at once")
    run.add_argument("--threads", type=int, default=1, help="torch threads per run")
    run.add_argument(
        "--inception-nfe",
        type=int,
        nargs="+",
        default=[1, 2],
        help="NFE scored with Inception FID (the rest: digit metrics only); EDM: 1, 35 and these of its NFE",
    )
    run.add_argument(
        "--trainer",
        default=None,
        help="trainer config for the runs, e.g. gpu_fp32 (fp32 like the CPU rows) on a lent GPU; default: the rows' "
        "own (cpu). The row's step count is kept and the record names the GPU",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="rebuild the records of runs in results.json, computing missing scores (e.g. --inception-nfe 1 2)",
    )
    tr = sub.add_parser("train", help="train --rows x --seeds without scoring (on a lent GPU: see the module doc)")
    jobs_args(tr, workers=4)
    tr.add_argument("--trainer", default=None, help="as for run, e.g. gpu_fp32")
    tr.add_argument("--extra", nargs="*", default=[], help="more lct.train overrides, e.g. trainer.compile=true")
    tr.add_argument("--max-time", default="", help="stop each run there (DD:HH:MM:SS) with its last.ckpt")
    tr.add_argument("--runs-dir", default=None, help=f"instead of {RUNS_DIR.relative_to(ROOT)}")
    pk = sub.add_parser("pack", help="checkpoints without optimizer state + the runs' small files, for a device")
    pk.add_argument("--out", required=True)
    pk.add_argument("--ckpts", nargs="*", default=[], help="<row>_seed<k> of the checkpoints to write")
    pk.add_argument("--runs-dirs", nargs="+", default=[str(RUNS_DIR)])
    pk.add_argument("--rows", nargs="*", default=[], help="the rows whose run dirs go into runs.tar.gz (default all)")
    co = sub.add_parser("collect", help="the curves of runs `train` left (e.g. stopped by --max-time) -> one JSON")
    co.add_argument("--runs-dirs", nargs="+", required=True)
    co.add_argument("--rows", nargs="+", required=True, choices=list(ROWS))
    co.add_argument("--out", required=True)
    sc = sub.add_parser("score", help="score stopped runs (e.g. unpacked from a GPU) where they stopped -> score.json")
    jobs_args(sc, workers=1)
    sc.add_argument("--inception-nfe", type=int, nargs="+", default=[1, 2], help="as for run")
    up = sub.add_parser("unpack", help="a pack output back under outputs/ (then `score` scores it)")
    up.add_argument("dir")
    up.add_argument("--runs-dir", default=None, help=f"instead of {RUNS_DIR.relative_to(ROOT)}")
    rr = sub.add_parser("rerun", help="retrain published runs here (outputs/rerun) and compare with their records")
    jobs_args(rr, workers=2)
    rr.add_argument("--out", required=True, help="JSON of the comparisons (kept entries of other runs stay)")
    sub.add_parser("report", help="tables and plots from results.json")
    sm = sub.add_parser("sigma-mid", help="2-NFE sigma_mid sweep (digit FID, DEV_SEED noise) -> sigma_mid.json")
    sm.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=list(ROWS))
    sm.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sm.add_argument("--workers", type=int, default=2)
    sm.add_argument("--threads", type=int, default=1)
    sm.add_argument(
        "--score-index",
        type=int,
        default=None,
        help="also score 2 NFE at this sigma_mid index on the evaluation noise (Inception FID; pick it from the sweep)",
    )
    args = ap.parse_args()
    if getattr(args, "runs_dir", None):
        RUNS_DIR = Path(args.runs_dir).resolve()
    if args.cmd == "rerun":
        RUNS_DIR = RERUN_DIR
    if args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "train":
        cmd_train(args)
    elif args.cmd == "pack":
        cmd_pack(args)
    elif args.cmd == "unpack":
        cmd_unpack(args)
    elif args.cmd == "collect":
        cmd_collect(args)
    elif args.cmd == "score":
        cmd_score(args)
    elif args.cmd == "rerun":
        cmd_rerun(args)
    elif args.cmd == "sigma-mid":
        cmd_sigma_mid(args)
    else:
        from report import report  # experiments/ablation/report.py

        report(json.loads(RESULTS.read_text())["runs"], HERE)


if __name__ == "__main__":
    main()
