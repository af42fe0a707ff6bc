#!/usr/bin/env bash
# The study's sweeps (README.md here: one per question), as Hydra multiruns of `python -m lct.train`: three seeds,
# two runs at once (hydra/launcher=joblib, each run cores/2 torch threads). Each run writes its record.json; then
#   python -m lct.report multirun/ablation/<question>
# prints the table. Usage: bash experiments/ablation/sweeps.sh chain|c|length|recipe|init  [more lct.train overrides]
# (hours each on a 2-core CPU; the committed records under records/ are the study's own runs of these sweeps), then
# bash experiments/ablation/sweeps.sh score <question>: the study's fixed evaluation of every run of that sweep.
set -euo pipefail
q=${1:?which sweep: chain, c, length, recipe or init}
shift
# SEEDS=1 bash ... picks other seeds; the one-seed rows of the study ran seed 0.
train() { python -m lct.train -m "seed=${SEEDS:-0,1,2}" hydra/launcher=joblib hydra.launcher.n_jobs=2 \
    hydra.sweep.dir="multirun/ablation/$q/$1" "${@:2}"; }
case $q in
chain)  # Q1: the paper's Table 2(a) as a cumulative chain, sLCT without OT, and the latent EDM baseline
    train chain experiment=ilct,cauchy,cauchy_diff,cauchy_ot,cauchy_ot_c,slct,slct_noot "$@"
    train block4 experiment=cauchy_ot coupling=ot_block4 "$@"  # OT within runs of 4 (as loose as D = 4,096)
    train edm experiment=edm callbacks.checkpoint.save_top_k=-1 "$@" ;;
c)      # Q2: is the paper's c(N) the reason? fitted c, online c, c(N) without OT, NsLN and weight decay on iCT
    train fitted experiment=cauchy_ot_c c_schedule=fitted_mnist "$@"
    train online experiment=cauchy_ot c_schedule=online "$@"
    train diff_c experiment=cauchy_diff c_schedule=adaptive "$@"
    train nsln experiment=ilct norm=nsln "$@"
    train wd0 experiment=ilct optimizer.weight_decay=0 "$@" ;;
length) # Q3: does the ordering turn with training length (the curriculum stretches with the steps)?
    train 6k experiment=ilct,slct_noot,slct,edm trainer.max_steps=6000 "$@"
    SEEDS=${SEEDS:-0} train 20k experiment=ilct,slct_noot,slct,edm trainer.max_steps=20000 "$@"
    # dead blocks: iLCT's 20,000 steps without weight decay, every 1,000-step checkpoint kept for dead_blocks.py
    SEEDS=${SEEDS:-0} train wd0_20k experiment=ilct trainer.max_steps=20000 optimizer.weight_decay=0 \
        callbacks.checkpoint.every_n_train_steps=1000 callbacks.checkpoint.save_top_k=-1 "$@" ;;
recipe) # Q4: a recipe from the paper's components at the main job's budget (make run: slct_noot, beta2 0.99)
    train betas experiment=ilct,slct_noot,slct,cauchy_ot 'optimizer.betas=[0.9,0.999],[0.9,0.99]' "$@"
    SEEDS=${SEEDS:-0} train beta95 experiment=slct_noot 'optimizer.betas=[0.9,0.95]' "$@"
    SEEDS=${SEEDS:-0} train lr experiment=ilct,slct_noot optimizer.lr=2e-3 "$@"
    SEEDS=${SEEDS:-0} train b64 experiment=ilct,slct_noot data.batch_size=64 trainer.max_steps=2600 "$@"
    SEEDS=${SEEDS:-0} train cool experiment=slct_noot lr_schedule=cooldown "$@"
    SEEDS=${SEEDS:-0} train ema experiment=slct_noot ema.warmup=3 'ema.decays=[0.999,0.998,0.997,0.994,0.99]' "$@"
    train steps experiment=slct_noot 'optimizer.betas=[0.9,0.99]' trainer.max_steps=2000,2500,6000 "$@"
    train ilct_2k5 experiment=ilct trainer.max_steps=2500 "$@"
    # one knob of the recipe at a time (seed 0): curriculum, weight decay, c(N) x 0.5 / 0.25, diffusion weight, lr, size
    for knob in method.curriculum.s0=20,40 method.curriculum.s1=80 optimizer.weight_decay=0 \
        method.c.offset=-1.543147,-2.236294 method.diffusion.weight=10 optimizer.lr=2e-3 \
        "+backbone.model_channels=16 trainer.max_steps=3500" "+backbone.num_blocks=1 trainer.max_steps=2000"; do
        # shellcheck disable=SC2086  # a knob may be two overrides
        SEEDS=${SEEDS:-0} train "knob_${knob%%=*}" experiment=slct_noot 'optimizer.betas=[0.9,0.99]' $knob "$@"
    done ;;
init)   # Q1: consistency training started from the same seed's EDM run at step 500 (after `chain`'s edm sweep)
    for s in 0 1 2; do
        ckpt=$(ls -d multirun/ablation/chain/edm/*seed=$s*/checkpoints/epoch=0-step=500.ckpt)
        SEEDS=$s train "init_seed$s" experiment=ilct,cauchy_ot trainer.max_steps=1000 "init_from=\"$ckpt\"" "$@"
    done ;;
score)  # Inception FID/KID/P/R + digit metrics of 1,000 EMA samples (noise seeds 10,000 + i) at 1 and 2 NFE against
    # the fixed 1,000 reference digits (a seed-0 permutation of the wheel's 5,000), cached under outputs/ablation_ref
    ref=outputs/ablation_ref/mnist_ref1000_seed0.npy
    [ -f "$ref" ] || python -c "import numpy as np, pathlib; from lct.data.sources import load_mnist
x, _ = load_mnist(); pathlib.Path('$ref').parent.mkdir(parents=True, exist_ok=True)
np.save('$ref', x[np.random.default_rng(0).permutation(len(x))[:1000]][:, None])"
    for ckpt in multirun/ablation/"${1:?which sweep to score}"/*/*/checkpoints/last.ckpt; do
        python -m lct.evaluate "$ckpt" --out "${ckpt%/checkpoints/*}/eval" --num-samples 1000 --seed 10000 \
            --nfe 1 2 --metrics inception,digit --reference-images "$ref" --num-reference 1000 \
            --kid-subset-size 500 --reference outputs/ablation_ref/reference_ref1000_seed0.pt --no-progress
    done ;;
*) echo "unknown sweep $q: chain, c, length, recipe or init" >&2; exit 2 ;;
esac
