#!/bin/bash
# Prabhu et al. small-scale chain (resumable): clean base, three fine-tunes, evaluation, 2D landscapes.
set -e
cd /work/main
D=../shared/datasets
tfrobust train recipes/prabhu2019_cifar10_clean_resnet32.py --variant small --data-dir $D --output runs/prabhu_clean
for a in fgsm pgd stadv; do
  tfrobust train recipes/prabhu2019_cifar10_finetune_${a}_resnet32.py --variant small --data-dir $D \
    --set train.init_from=runs/prabhu_clean/model.keras --output runs/prabhu_ft_$a
done
for m in clean ft_fgsm ft_pgd ft_stadv; do
  [ -f runs/prabhu_$m/eval.json ] || tfrobust eval runs/prabhu_$m --data-dir $D --json runs/prabhu_$m/eval.json
done
# The stAdv column at a 0.3 px flow bound (the recipe's 0.3/64 px does nothing visible), on the first 500 images.
for m in clean ft_fgsm ft_pgd ft_stadv; do
  [ -f runs/prabhu_$m/eval_stadv_0.3px.json ] || tfrobust eval runs/prabhu_$m --attacks stadv --stadv-eps 0.3 --n 500 \
    --data-dir $D --no-checks --json runs/prabhu_$m/eval_stadv_0.3px.json
done
for m in clean ft_fgsm ft_pgd ft_stadv; do
  [ -f runs/prabhu_$m/landscape/sharpness.json ] || tfrobust landscape runs/prabhu_$m --dims 2 --points 9 --span=-1,1 \
    --n 256 --sharpness-n 256 --data-dir $D --out runs/prabhu_$m/landscape
done
# Which PGD ball the paper's "radius 1/255" means: PGD-10 with step 1/255 in five balls, on the clean base.
[ -f runs/prabhu_clean/pgd_radius.json ] || tfrobust eval runs/prabhu_clean --attacks pgd \
  --eps 1/255,2/255,4/255,8/255,16/255 --steps 10 --step-size 1/255 --restarts 1 --n 1000 --data-dir $D --no-checks \
  --json runs/prabhu_clean/pgd_radius.json
tfrobust geometry runs/prabhu_clean runs/prabhu_ft_fgsm runs/prabhu_ft_pgd runs/prabhu_ft_stadv --json runs/prabhu_geometry.json
echo CHAIN DONE
