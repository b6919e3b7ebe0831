#!/bin/bash
# Suri's robust Linf row at small scale: 3 seeds x {none, legacy, fixed}, ResNet-20, first 10k CIFAR-10 images,
# 10 epochs of PGD training at 8/255. Each command resumes from its checkpoints if interrupted. Run from the
# repository root. Each run's small files go to docs/results/suri/linf_<mode>_s<seed>/.
set -e
D=../shared/datasets
for s in 0 1 2; do
  for m in none legacy fixed; do
    out=runs/suri_linf_${m}_s$s
    # A finished run is not trained again (that would add a line to its command.txt).
    [ -f $out/model.keras ] || tfrobust train recipes/suri2021_cifar10_linf_${m}_resnet20.py --variant small --data-dir $D \
      --set data.seed=$s --output $out
    [ -f $out/eval_clean10k.json ] || tfrobust eval $out --attacks none --n 10000 --data-dir $D --json $out/eval_clean10k.json
    # The recipe's evaluation: PGD-20 at 8/255 and 16/255 on the first 1000 test images. The gradient-masking
    # checks (5-10 min a model) run on seed 0's models only.
    checks=--no-checks; [ $s = 0 ] && checks=
    [ -f $out/eval.json ] || tfrobust eval $out --n 1000 $checks --data-dir $D --state-dir $out/eval_state --json $out/eval.json
    docs/results/collect.sh $out docs/results/suri/linf_${m}_s$s
  done
done
R=docs/results/suri
tfrobust compare none="$R/linf_none_s*/eval.json" legacy="$R/linf_legacy_s*/eval.json" fixed="$R/linf_fixed_s*/eval.json" \
  --json $R/linf_eval1000_compare.json
tfrobust compare legacy="$R/linf_legacy_s*/eval.json" fixed="$R/linf_fixed_s*/eval.json" --json $R/linf_eval1000_legacy_vs_fixed.json
tfrobust compare none="$R/linf_none_s*/eval_clean10k.json" legacy="$R/linf_legacy_s*/eval_clean10k.json" \
  fixed="$R/linf_fixed_s*/eval_clean10k.json" --json $R/linf_clean10k_compare.json
