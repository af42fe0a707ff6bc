#!/usr/bin/env bash
# The objectives head-to-head (issue 40; README here): sCM and MeanFlow against make run's recipe, iLCT and EDM on
# the built-in latents, at make run's budget (1,500 steps, batch 128, unet_tiny, Adam beta2 0.99 as make run).
#   bash experiments/objectives/sweeps.sh train  [extra overrides]   # SEEDS=0,1,2 by default
#   bash experiments/objectives/sweeps.sh score                      # the published protocol (1,000 vs 1,000)
# Runs land in multirun/objectives/<row>/<job>; their record.json files are what experiments/objectives/records keeps.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}  # make install's venv, else the PATH's
SEEDS=${SEEDS:-0,1,2}
q=${1:?train or score}; shift || true
common=(seed="$SEEDS" 'optimizer.betas=[0.9,0.99]' hydra/launcher=joblib)
case "$q" in
train)
    # sCM's tangent warm-up is 10k of the paper's iterations; at 1,500 steps r would reach 0.15, so it is 10% of K.
    $PY -m lct.train -m experiment=scm method.scm.warmup_steps=150 "${common[@]}" \
        hydra.sweep.dir=multirun/objectives/scm "$@"
    $PY -m lct.train -m experiment=meanflow "${common[@]}" hydra.sweep.dir=multirun/objectives/meanflow "$@" ;;
score)
    for ckpt in multirun/objectives/*/*/checkpoints/last.ckpt; do
        $PY -m lct.evaluate "$ckpt" --out "${ckpt%/checkpoints/*}/eval" --num-samples 1000 --num-reference 1000 \
            --seed 10000 --kid-subset-size 500 --metrics inception,digit --reference outputs/objectives_ref/reference.pt \
            --no-progress
    done ;;
*) echo "unknown step $q: train or score" >&2; exit 2 ;;
esac
