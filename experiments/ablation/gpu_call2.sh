#!/usr/bin/env bash
# The second device call of the study (2026-12-04, NVIDIA H200), verbatim: README "On a GPU, towards 20,000 steps".
# Carry .whl, data and .old (an export of the commit before the objective's sync cut: `git archive 90e2c8d | tar -x
# -C .old`). First the objective's host cost before/after on the GPU (benchmarks/README.md, "The objective's host
# cost"), then question 3's four 20,000-step rows at once (seed 0, CUDA graphs), stopped 450 s after the start;
# the old code trains them if the new one fails there. Writes ab.txt, log.txt and `study.py pack`'s files to $OUT.
set -u; export OUT; source benchmarks/gpu_env.sh; T0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/ab.txt 2>&1
B="benchmarks/bench_objective_ops.py --device cuda --experiments slct_noot slct edm --timed 200"
NEWOK=0; timeout 70 python3 $B --src $PWD >> $OUT/ab.txt 2>&1 && NEWOK=1
timeout 70 python3 $B --src $PWD/.old >> $OUT/ab.txt 2>&1; echo "ab done at $((SECONDS-T0)) s, new code ok: $NEWOK" >> $OUT/ab.txt
R=.; [ $NEWOK = 1 ] || { R=.old; ln -sfn ../data .old/data; ln -sfn ../.whl .old/.whl; }
(cd $R && EAGER=0 SEEDS=0 EXTRA=data.pin_memory=true bash experiments/ablation/gpu_long.sh $((450 - (SECONDS - T0))) > /dev/null 2>&1)
echo "total $((SECONDS-T0)) s from $R" >> $OUT/ab.txt; grep '^{\|done\|total\|Error\|NVIDIA' $OUT/ab.txt; tail -22 $OUT/log.txt; ls -la $OUT
