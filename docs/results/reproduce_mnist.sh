#!/usr/bin/env bash
# Reproduces the MNIST results in README.md. Run from the repository root after
# `pip install -e .`. Writes JSON reports and logs to docs/results/.
set -euo pipefail
out=docs/results
mkdir -p runs "$out"

# Wong et al. 2020, FGSM-RS, 3 seeds; PGD-50 x 10 restarts (step 0.01) on all 10k test images.
for s in 0 1 2; do
  start=$(date +%s)
  tfrobust train recipes/wong2020_mnist_linf_fgsm_rs.py --set data.seed=$s --output runs/wong_s$s --fresh \
    > "$out/wong2020_mnist_s$s.train.log" 2>&1
  mid=$(date +%s)
  tfrobust eval runs/wong_s$s --attacks pgd,pgd_margin --n 10000 --json "$out/wong2020_mnist_s$s.json" \
    > "$out/wong2020_mnist_s$s.eval.log" 2>&1
  end=$(date +%s)
  echo "{\"seed\": $s, \"train_s\": $((mid - start)), \"eval_s\": $((end - mid))}" > "$out/wong2020_mnist_s$s.time.json"
done

# Convergence check of the main job's model: more steps, more restarts, other step sizes.
model=saved_models/mnist_pgd_linf/3
for cfg in "200 10 0.01" "100 20 0.01" "100 5 0.003" "100 5 0.03" "100 5 0.1"; do
  set -- $cfg
  tfrobust eval "$model" --attacks pgd,pgd_margin --n 1000 --steps "$1" --restarts "$2" --step-size "$3" \
    --json "$out/main_convergence_steps$1_restarts$2_step$3.json" > "$out/main_convergence_steps$1_restarts$2_step$3.log" 2>&1
done
