#!/bin/bash
# Suri's standard row at small scale: 3 seeds x {none, legacy, fixed}, ResNet-20, first 10k CIFAR-10 images,
# 15 epochs. Each command resumes from its checkpoints if interrupted. Run from the repository root.
set -e
D=../shared/datasets
for s in 0 1 2; do
  for m in none legacy fixed; do
    out=runs/suri_standard_${m}_s$s
    # A finished run is not trained again (that would add a line to its command.txt).
    [ -f $out/model.keras ] || tfrobust train recipes/suri2021_cifar10_standard_${m}_resnet20.py --variant small --data-dir $D \
      --set data.seed=$s --output $out
    # Clean accuracy on all 10000 test images: the effects in question are 0.1-0.5 points.
    [ -f $out/eval_clean10k.json ] || tfrobust eval $out --attacks none --n 10000 --data-dir $D --json $out/eval_clean10k.json
    # The recipe's evaluation: clean and PGD-20 at 8/255 on the first 1000 test images. The masking
    # checks only add warnings and cost 5 min a model; seed 0's "none" run was evaluated with them.
    [ -f $out/eval.json ] || tfrobust eval $out --n 1000 --no-checks --data-dir $D --state-dir $out/eval_state --json $out/eval.json
  done
done
tfrobust compare none='runs/suri_standard_none_s*/eval_clean10k.json' legacy='runs/suri_standard_legacy_s*/eval_clean10k.json' \
  fixed='runs/suri_standard_fixed_s*/eval_clean10k.json' --json docs/results/suri/standard_clean10k_compare.json
tfrobust compare legacy='runs/suri_standard_legacy_s*/eval_clean10k.json' fixed='runs/suri_standard_fixed_s*/eval_clean10k.json' \
  --json docs/results/suri/standard_clean10k_legacy_vs_fixed.json
tfrobust compare none='runs/suri_standard_none_s*' legacy='runs/suri_standard_legacy_s*' fixed='runs/suri_standard_fixed_s*' \
  --json docs/results/suri/standard_eval1000_compare.json
