#!/bin/bash
# Suri's robust Linf row at small scale: 3 seeds x {none, legacy, fixed}, ResNet-20, first 10k CIFAR-10 images,
# 10 epochs of PGD training at 8/255. Run from the repository root; runs already collected in
# docs/results/suri/linf_<mode>_s<seed>/ are skipped, the others resume from runs/ (docs/results/lib.sh).
set -e
. docs/results/lib.sh
R=docs/results/suri
for s in ${SEEDS:-0 1 2}; do
  for m in ${MODES:-none legacy fixed}; do
    out=runs/suri_linf_${m}_s$s dest=$R/linf_${m}_s$s
    collected $dest eval_clean10k.json eval.json && continue
    train $out recipes/suri2021_cifar10_linf_${m}_resnet20.py --variant small --set data.seed=$s
    evaluate $out eval_clean10k.json --attacks none --n 10000
    # The recipe's evaluation: PGD-20 at 8/255 and 16/255 on the first 1000 test images. The gradient-masking
    # checks (5-10 min a model) run on seed 0's models only.
    checks=--no-checks; [ $s = 0 ] && checks=
    evaluate $out eval.json --n 1000 $checks --state-dir $out/eval_state
    docs/results/collect.sh $out $dest
  done
done
tfrobust compare none="$R/linf_none_s*/eval.json" legacy="$R/linf_legacy_s*/eval.json" fixed="$R/linf_fixed_s*/eval.json" \
  --json $R/linf_eval1000_compare.json
tfrobust compare legacy="$R/linf_legacy_s*/eval.json" fixed="$R/linf_fixed_s*/eval.json" --json $R/linf_eval1000_legacy_vs_fixed.json
tfrobust compare none="$R/linf_none_s*/eval_clean10k.json" legacy="$R/linf_legacy_s*/eval_clean10k.json" \
  fixed="$R/linf_fixed_s*/eval_clean10k.json" --json $R/linf_clean10k_compare.json
