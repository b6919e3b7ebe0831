#!/bin/bash
# Xie & Yuille small CPU protocol (resumable): plain BN vs MixBN vs adversarial-only, seeds 0-2. Run from the
# repository root. Seed 0 also ran the BN-statistics evaluations (eval_batchstats.json, eval_cleanbranch.json,
# mixbn_stats.*); seeds 1-2 run the training and the recipe's evaluation (eval.json).
#
# Each run's small files are copied to docs/results/xie/<row>_s<seed>/ by collect.sh. The recipe.json of
# bn_s0, bn_s1, mixbn_s0 and advonly_s0 was regenerated after the machine that trained them was gone
# (RECIPE_REGENERATED.txt beside it); the other runs' are their own.
set -e
D=../shared/datasets
for s in 0 1 2; do
  for r in bn:mixed_bn mixbn:mixed_mixbn advonly:advonly; do
    name=${r%%:*}; file=${r#*:}
    out=runs/xie_${name}_s$s
    # A finished run is not trained again (that would add a line to its command.txt).
    [ -f $out/model.keras ] || tfrobust train recipes/xie2020_cifar10_linf_${file}_resnet20.py --variant small --data-dir $D \
      --set data.seed=$s --output $out
    [ -f $out/eval.json ] || tfrobust eval $out --attacks pgd,pgd-targeted --n 1000 --data-dir $D \
        --state-dir $out/eval_state --json $out/eval.json
    if [ $s = 0 ]; then
      [ -f $out/eval_batchstats.json ] || tfrobust eval $out --attacks pgd --n 1000 --bn batch_stats --no-checks \
          --data-dir $D --json $out/eval_batchstats.json
    fi
    docs/results/collect.sh $out docs/results/xie/${name}_s$s
  done
done
out=runs/xie_mixbn_s0
[ -f $out/eval_cleanbranch.json ] || tfrobust eval $out --attacks pgd,pgd-targeted --n 1000 --bn-branch clean \
    --no-checks --data-dir $D --json $out/eval_cleanbranch.json
[ -f $out/mixbn_stats.json ] || tfrobust mixbn-stats $out --png $out/mixbn_stats.png --json $out/mixbn_stats.json
docs/results/collect.sh $out docs/results/xie/mixbn_s0
tfrobust compare bn='docs/results/xie/bn_s*' mixbn='docs/results/xie/mixbn_s*' advonly='docs/results/xie/advonly_s*' \
  --json docs/results/xie/compare.json
tfrobust compare mixbn='docs/results/xie/mixbn_s*' advonly='docs/results/xie/advonly_s*' \
  --json docs/results/xie/compare_mixbn_vs_advonly.json
tfrobust curves bn='docs/results/xie/bn_s*' mixbn='docs/results/xie/mixbn_s*' advonly='docs/results/xie/advonly_s*' \
  --png docs/results/xie/curves_val_robust.png --json docs/results/xie/curves_val_robust.json
