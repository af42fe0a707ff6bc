#!/usr/bin/env bash
# The GPU checks, as one prepared run on a lent machine (device tool; see benchmarks/README.md):
#   1. paper ADM UNet (NsLN) forward+backward+RAdam step, fp32 and bf16 autocast, batch 128, 4x32x32;
#   2. experiment=slct at paper scale through Lightning (and the plain loop), fp32 and bf16, steps/s + memory;
#   3. CPU-scale calibration: the built-in 1,500-step recipe under several settings, in parallel (the tiny
#      UNet is launch-bound, so they share the GPU well); EMA weights come back for FID on the CPU.
# Needs: .whl/ (hydra-core, omegaconf, antlr4, diffusers wheels) and data/mnist carried along.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled LCT_DATA_DIR=$PWD/data
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; LOG=$OUT/gpu_log.txt; RES=$LOG
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" >> "$LOG" 2>&1

python3 benchmarks/gpu_backbones.py 2>>"$LOG" | tee -a "$RES"
PAPER="backbone=unet_paper data.latent_resolution=32 data.batch_size=128 data.num_items=4096"
python3 benchmarks/bench_train.py --device cuda --steps 120 --warmup 20 --data synthetic --paths lightning plain \
  --overrides experiment=slct $PAPER 2>>"$LOG" | tee -a "$RES"
python3 benchmarks/bench_train.py --device cuda --steps 120 --warmup 20 --data synthetic --paths lightning \
  --overrides experiment=slct $PAPER trainer.precision=bf16-mixed 2>>"$LOG" | tee -a "$RES"

run() {  # name, overrides...
  local name=$1; shift
  python3 -m lct.train trainer=gpu trainer.max_steps=1500 data.builtin=null logger=csv "$@" \
    hydra.run.dir=/tmp/cal/$name > /tmp/cal_$name.log 2>&1
  echo "== $name: $* (exit $?)" >> "$LOG"; tail -n 3 /tmp/cal_$name.log >> "$LOG"
}
run A optimizer.lr=1e-3 &
run B optimizer.lr=3e-4 &
run G optimizer.lr=3e-4 curriculum.s1=40 &
run C optimizer.lr=3e-4 c_schedule=online &
run D optimizer.lr=3e-4 curriculum.s1=80 &
run E optimizer.lr=3e-4 experiment=slct &
run F optimizer.lr=3e-4 experiment=ilct &
wait
# Slim checkpoints: config + EMA weights in fp16 (a few MB each) for FID on the CPU machine.
python3 - "$OUT" <<'PY' >> "$LOG" 2>&1
import sys, torch, pathlib
out = pathlib.Path(sys.argv[1])
for ck in sorted(pathlib.Path("/tmp/cal").glob("*/checkpoints/last.ckpt")):
    c = torch.load(ck, map_location="cpu", weights_only=False)
    c["lct"]["config"]["data"]["root"] = "data/mnist"
    sd = {k: v.half() if v.is_floating_point() else v for k, v in c["state_dict"].items() if k.startswith("emas.")}
    torch.save({"lct": {"config": c["lct"]["config"]}, "state_dict": sd}, out / f"cal_{ck.parts[3]}.ckpt")
    print("saved", ck.parts[3], c["global_step"])
PY
for f in /tmp/cal/*/csv/version_0/metrics.csv; do echo "== $f"; tail -n 2 "$f"; done >> "$LOG"
