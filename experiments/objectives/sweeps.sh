#!/usr/bin/env bash
# The objectives head-to-head (issue 40; README here): sCM and MeanFlow, alone and with the paper's parts, against
# make run's recipe, iLCT and EDM (their rows: experiments/ablation) on the built-in latents, at make run's budget
# (batch 128, unet_tiny, RAdam beta2 0.99 as make run).
#   bash experiments/objectives/sweeps.sh train ROW [extra lct.train overrides]   # SEEDS=0,1,2 by default
#   bash experiments/objectives/sweeps.sh score ROW                               # the published protocol
# ROW: meanflow, meanflow_parts, scm_w150, scm_parts, or one part alone: meanflow_cauchy, meanflow_ot, meanflow_nsln,
# scm_cauchy, scm_ot, scm_nsln; ROW_6k runs 6,000 steps, ROW_1k1 1,100 (MeanFlow's steps in make run's CPU time:
# benchmarks/README.md, "The objectives at one thread").
# Runs land in multirun/objectives/<row>/seed<seed>; their record.json files are what records/ keeps.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-0,1,2}
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}  # make install's venv, else the PATH's
q=${1:?train or score}
row=${2:?which row: meanflow, meanflow_parts, scm_w150, scm_parts, or meanflow_/scm_ + cauchy, ot or nsln}
shift 2
parts=(metric=cauchy coupling=ot norm=nsln)  # the paper's parts, one override each
declare -A part=([cauchy]=metric=cauchy [ot]=coupling=ot [nsln]=norm=nsln)
base=${row%_6k}; base=${base%_1k1}
case $base in
meanflow)       args=(experiment=meanflow) ;;
meanflow_parts) args=(experiment=meanflow "${parts[@]}") ;;
# sCM's tangent warm-up is 10k of the paper's iterations; at 1,500 steps r would reach 0.15, so it is 10% of K.
scm_w150)       args=(experiment=scm method.scm.warmup_steps=150) ;;
scm_parts)      args=(experiment=scm method.scm.warmup_steps=150 "${parts[@]}") ;;
meanflow_cauchy | meanflow_ot | meanflow_nsln) args=(experiment=meanflow "${part[${base#meanflow_}]}") ;;
scm_cauchy | scm_ot | scm_nsln) args=(experiment=scm method.scm.warmup_steps=150 "${part[${base#scm_}]}") ;;
*) echo "unknown row $row" >&2; exit 2 ;;
esac
[[ $row == *_6k ]] && args+=(trainer.max_steps=6000)
[[ $row == *_1k1 ]] && args+=(trainer.max_steps=1100)
case "$q" in
train)
    $PY -m lct.train -m seed="$SEEDS" 'optimizer.betas=[0.9,0.99]' "${args[@]}" hydra/launcher=joblib \
        hydra.launcher.n_jobs="${JOBS:-2}" hydra.sweep.dir="multirun/objectives/$row" \
        'hydra.sweep.subdir=seed${seed}' "$@" ;;
score)  # 1,000 EMA samples (noise seeds 10,000 + i) at 1 and 2 NFE against the fixed 1,000 real digits, each
    # checkpoint once (SEEDS=1,2 scores those seeds only)
    for seed in ${SEEDS//,/ }; do
        ckpt=multirun/objectives/$row/seed$seed/checkpoints/last.ckpt
        $PY -m lct.evaluate "$ckpt" --out "${ckpt%/checkpoints/*}/eval" --num-samples 1000 --num-reference 1000 \
            --seed 10000 --kid-subset-size 500 --nfe 1 2 --metrics inception,digit --no-progress \
            --reference multirun/objectives/reference.pt  # the real digits' statistics, computed once
    done ;;
*) echo "unknown step $q: train or score" >&2; exit 2 ;;
esac
