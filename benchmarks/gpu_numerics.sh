#!/usr/bin/env bash
# Numerics of the GPU fast path (issue: throughput), as one prepared command on a lent machine:
#   bash benchmarks/gpu_numerics.sh [seconds]      # default 300; results under $OUT (default benchmarks/out)
# In parallel, until the deadline:
#   - the built-in main job (experiment=cauchy_ot, unet_tiny, 4x8x8 MNIST latents, batch 128, 1,500 steps)
#     with trainer=gpu_fp32 (fp32 eager) and trainer=gpu (bf16 + compile), seeds 0 and 1: loss curves and
#     the in-loop digit metrics (1 and 2 NFE, every 500 steps);
#   - the paper UNet (experiment=slct scale=paper backbone=unet_paper, 4x32x32 synthetic latents, batch
#     128) with trainer=gpu for up to 2,000 steps, counting non-finite steps.
# benchmarks/collect_numerics.py gathers every run's metrics.csv into gpu_numerics.json.
set -u
source "$(dirname "$0")/gpu_env.sh"
RUNS=${RUNS:-/tmp/numerics}; mkdir -p "$RUNS"
DEADLINE=$(( $(date +%s) + ${1:-300} ))
# Build the built-in latent cache once, before the parallel runs.
python3 -m lct.train trainer=gpu_fp32 trainer.max_steps=1 logger=none ~callbacks.progress ~callbacks.digits ~callbacks.sample_grid \
  hydra.run.dir=$RUNS/warm > "$RUNS/warm.log" 2>&1
run() {  # name, overrides...
  local name=$1; shift
  timeout $(( DEADLINE - $(date +%s) )) python3 -m lct.train "$@" ~callbacks.progress hydra.run.dir=$RUNS/$name \
    > "$RUNS/$name.log" 2>&1
  echo "$name exit $?" >> "$RUNS/status.txt"
}
for s in 0 1; do
  run tiny_fp32_s$s experiment=cauchy_ot trainer=gpu_fp32 trainer.max_steps=1500 seed=$s &
  run tiny_fast_s$s experiment=cauchy_ot trainer=gpu trainer.max_steps=1500 seed=$s &
done
[ -n "${SKIP_PAPER:-}" ] || run paper_bf16 experiment=slct scale=paper backbone=unet_paper data=synthetic data.latent_resolution=32 \
  data.batch_size=128 data.num_items=8192 trainer=gpu trainer.max_steps=2000 ~callbacks.sample_grid \
  callbacks.checkpoint.every_n_train_steps=100000 &
wait
python3 benchmarks/collect_numerics.py "$RUNS" "$OUT/gpu_numerics.json"
