#!/bin/bash
# Gowal et al. rows at small scale (ResNet-20, first 10k CIFAR-10 images, TRADES, 780 steps). Run from the
# repository root; every command resumes from its checkpoints.
set -e
D=../shared/datasets

# Each run's small files are copied to docs/results/gowal/<run>/ by collect.sh. none_s0's recipe.json was
# regenerated after its machine was gone (none_s0/RECIPE_REGENERATED.txt).

# Session 5's baseline, seed 0, with the recipe as it was then (EMA 0.995, epochs = passes over the real data).
[ -f runs/gowal_none_s0/model.keras ] || tfrobust train recipes/gowal2021_cifar10_linf_trades_none_resnet20.py \
  --variant small --data-dir $D --set data.seed=0 --set train.ema_decay=0.995 --set train.epoch_length=pass --output runs/gowal_none_s0
[ -f runs/gowal_none_s0/eval.json ] || tfrobust eval runs/gowal_none_s0 --attacks pgd --n 1000 --data-dir $D \
  --state-dir runs/gowal_none_s0/eval_state --json runs/gowal_none_s0/eval.json
docs/results/collect.sh runs/gowal_none_s0 docs/results/gowal/none_s0

# The rows at equal steps (10 epochs of 78 steps, EMA 0.99). runs/gowal_steps_none_s0 was started with the
# equivalent `train.steps_per_epoch=78` (its recipe.json), before `train.epoch_length` existed.
for s in 0 1 2; do
  for r in none gaussian; do
    out=runs/gowal_steps_${r}_s$s
    # A finished run is not trained again (that would add a line to its command.txt).
    [ -f $out/model.keras ] || tfrobust train recipes/gowal2021_cifar10_linf_trades_${r}_resnet20.py --variant small --data-dir $D \
      --set data.seed=$s --output $out
    [ -f $out/eval.json ] || tfrobust eval $out --attacks pgd --n 1000 --data-dir $D --state-dir $out/eval_state \
      --json $out/eval.json
    docs/results/collect.sh $out docs/results/gowal/steps_${r}_s$s
  done
done
tfrobust compare none='docs/results/gowal/steps_none_s*' gaussian='docs/results/gowal/steps_gaussian_s*' \
  --json docs/results/gowal/steps_compare.json

# The lowdata protocol (2000 real images, 600 steps, piecewise lr): seeds 0-2 of both rows, then their curves.
for s in 0 1 2; do
  for r in none gaussian; do
    out=runs/gowal_lowdata_${r}_s$s
    [ -f $out/model.keras ] || tfrobust train recipes/gowal2021_cifar10_linf_trades_${r}_resnet20.py --variant lowdata \
      --data-dir $D --set data.seed=$s --output $out
    [ -f $out/eval.json ] || tfrobust eval $out --attacks pgd --n 1000 --data-dir $D --state-dir $out/eval_state \
      --json $out/eval.json
    docs/results/collect.sh $out docs/results/gowal/lowdata_${r}_s$s
  done
done
tfrobust curves none='docs/results/gowal/lowdata_none_s*' gaussian='docs/results/gowal/lowdata_gaussian_s*' \
  --png docs/results/gowal/lowdata_curves.png --json docs/results/gowal/lowdata_curves.json
tfrobust compare none='docs/results/gowal/lowdata_none_s*' gaussian='docs/results/gowal/lowdata_gaussian_s*' \
  --json docs/results/gowal/lowdata_compare.json
