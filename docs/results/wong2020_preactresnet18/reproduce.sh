#!/bin/bash
# The flagship: Wong et al. 2020 FGSM-RS PreActResNet-18 on all of CIFAR-10, trained, evaluated and exported.
# Run from the repository root:
#   docs/results/wong2020_preactresnet18/reproduce.sh [precision] [train] [eval] [crosscheck] [report]
# (no argument: precision train eval report; crosscheck needs REFERENCE_PYTHON, below)
# precision: the small variant (10k images, 3 epochs, seed 0) in the recipe's precision (mixed bfloat16 training,
# bfloat16 attack) and in float32, each evaluated in float32 with PGD-20 on the first 1000 test images. The bf16
# row was trained before LowPrecisionBatchNorm became the BatchNorm of a bfloat16 model; bf16lpbn is the same
# command trained with it.
# Every step resumes (training from its checkpoints, evaluations from their state directories), so the same
# command continues after a kill. Training: about 3.3 hours on 2 idle cores; the evaluation of the first 1000
# test images (PGD-50 x 10 and AutoAttack, masking checks on) several more. OUT=DIR puts the run elsewhere.
# crosscheck: the reference AutoAttack (fra31/auto-attack) on the first 500 test images, beside tfrobust's outcomes
# read from the evaluation's state (benchmarks/autoattack_reference.py --tfrobust-state), in chunks of 50 kept in
# $OUT/aaref_state; REFERENCE_PYTHON=a Python that has torch and the reference (benchmarks/README.md), and
# REFERENCE_GIT_DIR=its git directory if at hand (the JSON then records its commit).
# report: the HTML robustness report of the evaluated export, in docs/reports/.
set -e
. docs/results/lib.sh
R=docs/results/wong2020_preactresnet18
out=${OUT:-runs/wong2020_preactresnet18}
recipe=recipes/wong2020_cifar10_linf_fgsm_rs_preactresnet18.py
parts=${*:-precision train eval report}
check_parts "$parts" precision train eval crosscheck report
if [[ " $parts " == *" precision "* ]]; then
  for cfg in "bf16:" "f32:--set train.precision=float32 --set attack.precision=float32" "bf16lpbn:"; do
    name=${cfg%%:*} extra=${cfg#*:}
    dest=$R/precision_check_$name rout=runs/wong2020_precision_check_$name
    collected $dest eval.json && continue
    train $rout $recipe --variant small $extra
    evaluate $rout eval.json --attacks pgd --steps 20 --restarts 1 --n 1000 --no-checks --state-dir $rout/eval_state
    docs/results/collect.sh $rout $dest
  done
fi
NAME=cifar10_fgsm_rs_linf_preactresnet18
if [[ " $parts " == *" train "* ]]; then
  train $out $recipe
  tfrobust curves wong2020=$out --png $out/curves_val_robust.png --json $out/curves_val_robust.json
  docs/results/collect.sh $out $R
  # Exported at once, before the hours of evaluation, so that the trained weights are kept (committed) even if
  # the machine and runs/ are lost; the eval part evaluates this export and exports it again with its metrics.
  [ -d saved_models/$NAME ] || tfrobust export $out --name $NAME --no-eval
fi
if [[ " $parts " == *" eval "* ]]; then
  first=saved_models/$NAME/$(ls saved_models/$NAME | sort -n | head -1)
  # Clean accuracy of the exported model on all 10,000 test images.
  collected $R eval_clean.json || \
    tfrobust eval $first --attacks none --n 10000 --data-dir "$D" --json $R/eval_clean.json
  # The recipe's evaluation (PGD-50 x 10 restarts and AutoAttack on the first 1000, the gradient-masking
  # checks) of the classifier rebuilt from the export (its logits checked on the whole test set), then the
  # next version with the metrics. Resumable: finished batches are kept in the state directory.
  # The batches finished in earlier sessions are committed ($R/eval_state_partial, each tied to the export's
  # weights and the test images by state.json); a machine without the state directory continues from them.
  if [ ! -d $out/eval_state ] && [ -d $R/eval_state_partial ]; then
    mkdir -p $out && cp -r $R/eval_state_partial $out/eval_state
  fi
  collected $R eval.json || \
    tfrobust export $first --state-dir $out/eval_state --batch-size 100 --data-dir "$D" --json $R/eval.json
fi
if [[ " $parts " == *" crosscheck "* ]]; then
  : "${REFERENCE_PYTHON:?crosscheck: set REFERENCE_PYTHON to a Python that has torch and fra31/auto-attack (benchmarks/README.md)}"
  state=$out/eval_state
  [ -d $state ] || state=$R/eval_state_partial
  first=saved_models/$NAME/$(ls saved_models/$NAME | sort -n | head -1)
  # The reference's chunks finished in earlier sessions are committed ($R/aaref_state_partial, tied to the
  # model's weights and the points); a machine without the state directory continues from them.
  if [ ! -d $out/aaref_state ] && [ -d $R/aaref_state_partial ]; then
    mkdir -p $out && cp -r $R/aaref_state_partial $out/aaref_state
  fi
  collected $R aaref_first500.json || \
    python benchmarks/autoattack_reference.py --model $first --dataset cifar10 --eps 8/255 --norm Linf --n 500 \
      --version standard --data-dir "$D" --reference-python "$REFERENCE_PYTHON" --tfrobust-state $state \
      --state-dir $out/aaref_state --chunk 50 ${REFERENCE_GIT_DIR:+--reference-git-dir "$REFERENCE_GIT_DIR"} \
      --json $R/aaref_first500.json
fi
if [[ " $parts " == *" report "* ]]; then
  collected $R eval.json || { echo "report: waits for the evaluation (the eval part) to finish" >&2; exit 0; }
  last=saved_models/$NAME/$(ls saved_models/$NAME | sort -n | tail -1)
  collected docs/reports/cifar10_linf_fgsm_rs_preactresnet18 report.html || \
    tfrobust report $last --output docs/reports/cifar10_linf_fgsm_rs_preactresnet18 --data-dir "$D" --eval $R/eval.json
fi
