#!/bin/bash
# Suri's robust rows at small scale: 3 seeds x {none, legacy, fixed}, ResNet-20, first 10k CIFAR-10 images,
# 10 epochs of PGD training, at Linf 8/255 (evaluated at 8/255 and 16/255) and L2 1.0 (evaluated at 0.5 and 1.0).
# Run from the repository root:
#   docs/results/suri/reproduce_robust.sh [linf] [l2]      (no argument: both)
# Runs already collected in docs/results/suri/<norm>_<mode>_s<seed>/ are skipped, the others resume from runs/
# (docs/results/lib.sh). SEEDS="2" and MODES="none fixed" limit the runs.
set -e
. docs/results/lib.sh
R=docs/results/suri
norms=${*:-linf l2}
check_parts "$norms" linf l2
for n in $norms; do
  for s in ${SEEDS:-0 1 2}; do
    for m in ${MODES:-none legacy fixed}; do
      out=runs/suri_${n}_${m}_s$s dest=$R/${n}_${m}_s$s
      collected $dest eval_clean10k.json eval.json && continue
      train $out recipes/suri2021_cifar10_${n}_${m}_resnet20.py --variant small --set data.seed=$s
      evaluate $out eval_clean10k.json --attacks none --n 10000
      # The recipe's evaluation: PGD-20 at the recipe's two radii on the first 1000 test images. The
      # gradient-masking checks (5-10 min a model) run on seed 0's models only.
      checks=--no-checks; [ $s = 0 ] && checks=
      evaluate $out eval.json --n 1000 $checks --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
  tfrobust compare none="$R/${n}_none_s*/eval.json" legacy="$R/${n}_legacy_s*/eval.json" \
    fixed="$R/${n}_fixed_s*/eval.json" --json $R/${n}_eval1000_compare.json
  tfrobust compare legacy="$R/${n}_legacy_s*/eval.json" fixed="$R/${n}_fixed_s*/eval.json" \
    --json $R/${n}_eval1000_legacy_vs_fixed.json
  tfrobust compare none="$R/${n}_none_s*/eval_clean10k.json" legacy="$R/${n}_legacy_s*/eval_clean10k.json" \
    fixed="$R/${n}_fixed_s*/eval_clean10k.json" --json $R/${n}_clean10k_compare.json
  tfrobust compare legacy="$R/${n}_legacy_s*/eval_clean10k.json" fixed="$R/${n}_fixed_s*/eval_clean10k.json" \
    --json $R/${n}_clean10k_legacy_vs_fixed.json
done
