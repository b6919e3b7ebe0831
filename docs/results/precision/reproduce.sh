#!/bin/bash
# Does the bfloat16 training attack cost robustness? The shipped recipe (tfrobust_cifar10_linf_pgd3_resnet20:
# ResNet-20, PGD-3 at 8/255, all 50k training images) for 15 epochs, seeds 0-2, once with the attack's passes in
# float32 and once in bfloat16 (attack.precision; the training pass is float32 in both), each evaluated in float32
# by the recipe's PGD-50 with the gradient-masking checks on the first 1000 test images, then paired seed by seed.
# Run from the repository root:
#   docs/results/precision/reproduce.sh [train] [compare]          (no argument: both)
# SEEDS="0" and ATTACKS="f32" (or "bf16") select rows, so that two rows can run side by side, one per core:
#   SEEDS=0 ATTACKS=f32 taskset -c 0 docs/results/precision/reproduce.sh train &
#   SEEDS=0 ATTACKS=bf16 taskset -c 1 docs/results/precision/reproduce.sh train &
# A row takes about 1-2.5 hours of 2 idle cores (its history.csv has each epoch's seconds). Rows already collected in
# docs/results/precision/<attack>_s<seed>/ are skipped, the others resume from runs/ (docs/results/lib.sh).
set -e
. docs/results/lib.sh
R=docs/results/precision
recipe=recipes/tfrobust_cifar10_linf_pgd3_resnet20.py
parts=${*:-train compare}
check_parts "$parts" train compare
for a in ${ATTACKS:-f32 bf16}; do
  [[ " f32 bf16 " == *" $a "* ]] || { echo "ATTACKS: unknown attack precision '$a'; the choices are f32 and bf16" >&2; exit 2; }
done
if [[ " $parts " == *" train "* ]]; then
  for s in ${SEEDS:-0 1 2}; do
    for a in ${ATTACKS:-f32 bf16}; do
      precision=float32; [ $a = bf16 ] && precision=bfloat16
      out=runs/precision_${a}_s$s dest=$R/${a}_s$s
      collected $dest eval.json && continue
      train $out $recipe --set train.epochs=15 --set data.seed=$s --set attack.precision=$precision \
        --set train.precision=float32
      evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
fi
if [[ " $parts " == *" compare "* ]]; then
  tfrobust compare f32="$R/f32_s*" bf16="$R/bf16_s*" --json $R/compare.json
fi
