#!/usr/bin/env bash
# The attack-suite tables of the README (issue 3), on the shipped main-job model,
# first 1000 MNIST test images, Linf eps=0.3. Each command resumes from its
# --state-dir if interrupted.
set -euo pipefail
M=saved_models/mnist_pgd_linf/3
R=docs/results
tfrobust eval $M --attacks fgsm,pgd,apgd-ce,apgd-t,square,autoattack --n 1000 \
    --state-dir runs/eval_state/mnist_aa --json $R/mnist_autoattack.json 2>&1 | tee $R/mnist_autoattack.log
tfrobust eval $M --attacks pgd,apgd-ce --steps 50 --restarts 1 --apgd-steps 50 --n 1000 \
    --state-dir runs/eval_state/mnist_apgd_vs_pgd --json $R/mnist_apgd_vs_pgd50.json 2>&1 | tee $R/mnist_apgd_vs_pgd50.log
tfrobust eval $M --attacks stadv --n 1000 \
    --state-dir runs/eval_state/mnist_stadv --json $R/mnist_stadv.json 2>&1 | tee $R/mnist_stadv.log
tfrobust eval $M --attacks stadv --stadv-eps 1 --stadv-tau 0 --n 1000 \
    --state-dir runs/eval_state/mnist_stadv_1px --json $R/mnist_stadv_1px_tau0.json 2>&1 | tee $R/mnist_stadv_1px_tau0.log
