#!/usr/bin/env bash
# Question 3 on a lent GPU: the 20,000-step rows as one prepared command (README "On a GPU, towards 20,000 steps").
#   bash experiments/ablation/gpu_long.sh [seconds]    # default 450: every run stops there with its last.ckpt
# In parallel, fp32 (TF32) like `study.py run --trainer gpu_fp32`, without the sample-grid callback:
#   outputs/study:       ilct_20k, slct_20k, slct_noot_20k, edm_20k, seeds 0 and 1, the backbone compiled into
#                        CUDA graphs (unet_tiny's eager step is launch-bound: benchmarks/README.md);
#   outputs/study_eager: the same rows' seed 0 eager, in case compiling fails or is slow (and to compare with).
# Then `study.py pack` writes $OUT: seed 0 of each row (whichever variant got further) as a checkpoint without
# its optimizer state, and every run's small files. Here: `study.py unpack DIR`, then `study.py run` scores them.
# Needs hydra-core, omegaconf, antlr4, diffusers and mlxtend wheels in .whl/ and the built-in latents in data/
# (both carried: benchmarks/README.md, "Device notes"). SEEDS (compiled runs' seeds, default "0 1") and EAGER=0 (no
# eager runs) run fewer processes (the first call of 2026-12-04 ran twelve: 6.8-8.9 steps/s each, README question 3);
# ROWS (default the four below) runs fewer rows: one alone made 63 steps/s, four at once 29-39 each.
# TRAINER / COMPILE / EXTRA: a CPU smoke test of the plumbing.
set -u
source "$(dirname "$0")/../../benchmarks/gpu_env.sh"
SECS=${1:-450}
MAX=$(printf '00:00:%02d:%02d' $((SECS / 60)) $((SECS % 60)))
TRAINER=${TRAINER:-gpu_fp32}
COMPILE=${COMPILE-trainer.compile=true trainer.compile_mode=reduce-overhead}
EXTRA=${EXTRA:-}
SEEDS=${SEEDS:-0 1}
ROWS=${ROWS:-ilct_20k slct_20k slct_noot_20k edm_20k}
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) > "$OUT/log.txt" 2>&1
python3 -c "import torch, hydra, diffusers, mlxtend, lct; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  >> "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
train() {  # runs dir, seeds, extra overrides...
  local dir=$1 seeds=$2; shift 2
  # shellcheck disable=SC2086
  timeout $((SECS + 90)) python3 experiments/ablation/study.py train --runs-dir "$dir" --rows $ROWS --seeds $seeds \
    --workers 8 --threads 1 --trainer "$TRAINER" --max-time "$MAX" --extra "~callbacks.sample_grid" $EXTRA "$@" \
    >> "$OUT/log.txt" 2>&1
}
# shellcheck disable=SC2086
train outputs/study "$SEEDS" $COMPILE &
[ "${EAGER:-1}" = 0 ] || train outputs/study_eager 0 &
wait
# shellcheck disable=SC2086
python3 experiments/ablation/study.py pack --out "$OUT" --runs-dirs outputs/study outputs/study_eager --rows $ROWS \
  --ckpts $(for r in $ROWS; do printf '%s_seed0 ' "$r"; done) >> "$OUT/log.txt" 2>&1
for f in outputs/study*/*_20k/seed*/__main__.log; do  # the last in-loop digit metrics of every run
  echo "$f: $(grep 'digit metrics' "$f" | tail -1 | sed 's/.*step/step/')" >> "$OUT/log.txt"
done
cat "$OUT/log.txt"
ls -la "$OUT"
