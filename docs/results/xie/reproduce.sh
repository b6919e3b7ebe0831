#!/bin/bash
# Xie & Yuille small CPU protocol (resumable): plain BN vs MixBN vs adversarial-only. Seed 0 ran all of it;
# seeds 1-2 (in progress) run the training and the first evaluation (eval.json) of each row.
set -e
cd /work/main
D=../shared/datasets
for s in 0 1 2; do
  for r in bn:mixed_bn mixbn:mixed_mixbn advonly:advonly; do
    name=${r%%:*}; file=${r#*:}
    out=runs/xie_${name}_s$s
    [ -f $out/model.keras ] && [ -f $out/history.csv ] && [ "$(wc -l < $out/history.csv)" -gt 10 ] || \
      tfrobust train recipes/xie2020_cifar10_linf_${file}_resnet20.py --variant small --data-dir $D \
        --set data.seed=$s --output $out
    [ -f $out/eval.json ] || tfrobust eval $out --attacks pgd,pgd-targeted --n 1000 --data-dir $D \
        --state-dir $out/eval_state --json $out/eval.json
    [ -f $out/eval_batchstats.json ] || tfrobust eval $out --attacks pgd --n 1000 --bn batch_stats --no-checks \
        --data-dir $D --json $out/eval_batchstats.json
  done
  out=runs/xie_mixbn_s$s
  [ -f $out/eval_cleanbranch.json ] || tfrobust eval $out --attacks pgd,pgd-targeted --n 1000 --bn-branch clean \
      --no-checks --data-dir $D --json $out/eval_cleanbranch.json
  [ -f $out/mixbn_stats.json ] || tfrobust mixbn-stats $out --png $out/mixbn_stats.png --json $out/mixbn_stats.json
done
echo XIE DONE
