#!/bin/bash
# After the Xie chain: Gowal Linf none vs Gaussian (seed 0), then the Suri standard row (3 seeds). Resumable.
cd /work/main
while pgrep -f xie_chain.sh > /dev/null; do sleep 20; done
D=../shared/datasets
for r in none gaussian; do
  out=runs/gowal_${r}_s0
  tfrobust train recipes/gowal2021_cifar10_linf_trades_${r}_resnet20.py --variant small --data-dir $D \
    --set data.seed=0 --output $out || exit 1
  [ -f $out/eval.json ] || tfrobust eval $out --attacks pgd --n 1000 --data-dir $D --state-dir $out/eval_state \
    --json $out/eval.json || exit 1
done
exec runs/suri_chain.sh
