#!/usr/bin/env bash
# The GPU checks of the training fast path, as one prepared command on a lent machine (~4 min on an H200):
#   bash benchmarks/gpu_checks.sh          # results under $OUT (default benchmarks/out)
# benchmarks/bench_gpu_step.py, before (trainer=gpu_fp32: fp32 eager) and after (trainer=gpu: bf16 +
# torch.compile) in the same run: paper-scale experiment=slct step at batch 128 (samples/s, MFU, peak
# memory, top-10 kernels) and the unet_tiny 4x8x8 step at batch 128 (CUDA graphs). Writes gpu_step.json,
# gpu_profile.txt, gpu_step_log.txt. Needs hydra-core, omegaconf and antlr4 where python3 lacks them:
# their wheels in .whl/ (carried; see the device notes in benchmarks/README.md).
set -u
cd "$(dirname "$0")/.."
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
OUT=${OUT:-benchmarks/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 benchmarks/bench_gpu_step.py --out "$OUT" --budget-s "${BUDGET_S:-235}" "$@"
