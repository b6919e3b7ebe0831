#!/bin/bash
# The flagship: Wong et al. 2020 FGSM-RS PreActResNet-18 on all of CIFAR-10, trained, evaluated and exported.
# Run from the repository root:
#   docs/results/wong2020_preactresnet18/reproduce.sh [precision] [train] [eval] [export]   (no argument: all)
# precision: the small variant (10k images, 3 epochs, seed 0) in the recipe's precision (mixed bfloat16 training,
# bfloat16 attack) and in float32, each evaluated in float32 with PGD-20 on the first 1000 test images.
# Every step resumes (training from its checkpoints, evaluations from their state directories), so the same
# command continues after a kill. Training: about 2.5 hours on 2 idle cores; the evaluation of the first 1000
# test images (PGD-50 x 10 and AutoAttack, masking checks on) several more.
set -e
. docs/results/lib.sh
R=docs/results/wong2020_preactresnet18
out=${OUT:-runs/wong2020_preactresnet18}
recipe=recipes/wong2020_cifar10_linf_fgsm_rs_preactresnet18.py
parts=${*:-precision train eval export}
check_parts "$parts" precision train eval export
if [[ " $parts " == *" precision "* ]]; then
  for cfg in "bf16:" "f32:--set train.precision=float32 --set attack.precision=float32"; do
    name=${cfg%%:*} extra=${cfg#*:}
    dest=$R/precision_check_$name rout=runs/wong2020_precision_check_$name
    collected $dest eval.json && continue
    train $rout $recipe --variant small $extra
    evaluate $rout eval.json --attacks pgd --steps 20 --restarts 1 --n 1000 --no-checks --state-dir $rout/eval_state
    docs/results/collect.sh $rout $dest
  done
fi
if [[ " $parts " == *" train "* ]]; then
  train $out $recipe
  tfrobust curves wong2020=$out --png $out/curves_val_robust.png --json $out/curves_val_robust.json
  docs/results/collect.sh $out $R
fi
if [[ " $parts " == *" eval "* ]]; then
  # Clean accuracy on all 10,000 test images, then the recipe's evaluation (PGD-50 x 10 restarts and
  # AutoAttack on the first 1000, with the gradient-masking checks).
  evaluate $out eval_clean.json --attacks none --n 10000
  evaluate $out eval.json --state-dir $out/eval_state
  docs/results/collect.sh $out $R
fi
if [[ " $parts " == *" export "* ]]; then
  # The same evaluation again from its state directory (nothing is recomputed), then the SavedModel.
  [ -d saved_models/cifar10_fgsm_rs_linf_preactresnet18/1 ] || \
    tfrobust export $out --name cifar10_fgsm_rs_linf_preactresnet18 --state-dir $out/eval_state --data-dir "$D"
fi
