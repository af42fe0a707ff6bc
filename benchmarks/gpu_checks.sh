#!/usr/bin/env bash
# The GPU checks of the training fast path, as one prepared command on a lent machine (~4 min on an H200):
#   bash benchmarks/gpu_checks.sh          # results under $OUT (default benchmarks/out)
# benchmarks/bench_gpu_step.py, before (trainer=gpu_fp32: fp32 eager) and after (trainer=gpu: bf16 +
# torch.compile) in the same run: paper-scale experiment=slct step at batch 128 (samples/s, MFU, peak
# memory, top-10 kernels) and the unet_tiny 4x8x8 step at batch 128 (CUDA graphs). Writes gpu_step.json,
# gpu_profile.txt, gpu_step_log.txt. Needs hydra-core, omegaconf and antlr4 where python3 lacks them:
# their wheels in .whl/ (carried; see the device notes in benchmarks/README.md).
set -u
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 benchmarks/bench_gpu_step.py --out "$OUT" --budget-s "${BUDGET_S:-235}" "$@"
