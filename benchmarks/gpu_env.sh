# Sourced by the GPU scripts: repository root as working directory, the carried .whl/ wheels (hydra-core,
# omegaconf, antlr4, diffusers, mlxtend) installed where the machine's python3 lacks them, lct on the
# path, offline settings, and $OUT.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! python3 -c "import hydra, diffusers, mlxtend" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
OUT=${OUT:-benchmarks/out}; mkdir -p "$OUT"
