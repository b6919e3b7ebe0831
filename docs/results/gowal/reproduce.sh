#!/bin/bash
# Gowal et al. rows at small scale (ResNet-20, CIFAR-10, TRADES). Run from the repository root:
#   docs/results/gowal/reproduce.sh [baseline] [steps] [lowdata] [lowdata500] [l2] [ratio] [heldout] [trades_bn] [mt]
#                                   [pseudo] [aa500]
# (no argument: all)
# Runs already collected in docs/results/gowal/<run>/ are skipped; the others resume from runs/
# (docs/results/lib.sh). SEEDS="1 2" limits the seeds of every part but baseline.
set -e
. docs/results/lib.sh
R=docs/results/gowal
parts=${*:-baseline steps lowdata lowdata500 l2 ratio heldout trades_bn mt pseudo aa500}
check_parts "$parts" baseline steps lowdata lowdata500 l2 ratio heldout trades_bn mt pseudo aa500

# Session 5's baseline, seed 0, first 10k images, with the recipe as it was then (EMA 0.995, epochs = passes
# over the real data). none_s0's recipe.json was regenerated after its machine was gone (RECIPE_REGENERATED.txt).
if [[ " $parts " == *" baseline "* ]] && ! collected $R/none_s0 eval.json; then
  out=runs/gowal_none_s0
  train $out recipes/gowal2021_cifar10_linf_trades_none_resnet20.py --variant small --set data.seed=0 \
    --set train.ema_decay=0.995 --set train.epoch_length=pass
  evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
  docs/results/collect.sh $out $R/none_s0
fi

# The rows at equal steps (first 10k images, 10 epochs of 78 steps, EMA 0.99). runs/gowal_steps_none_s0 was
# started with the equivalent `train.steps_per_epoch=78` (its recipe.json), before `train.epoch_length` existed.
# The lowdata protocol (2000 real images, 600 steps, piecewise lr), both rows; lowdata500, the same on 500 images,
# where the baseline overfits. lowdata500_none_s0 was the pilot, run as `--variant lowdata --set data.n_train=500`
# (the same settings; its recipe.json keeps the lowdata name). The l2 part is lowdata500 at L2 128/255 (files
# l2_lowdata500_*), evaluated by the recipe's PGD-20 at that radius.
for part in steps lowdata lowdata500 l2; do
  [[ " $parts " == *" $part "* ]] || continue
  variant=$part norm=linf name=$part
  [ $part = steps ] && variant=small
  [ $part = l2 ] && variant=lowdata500 norm=l2 name=l2_lowdata500
  for s in ${SEEDS:-0 1 2}; do
    for r in none gaussian; do
      out=runs/gowal_${name}_${r}_s$s dest=$R/${name}_${r}_s$s
      collected $dest eval.json && continue
      train $out recipes/gowal2021_cifar10_${norm}_trades_${r}_resnet20.py --variant $variant --set data.seed=$s
      evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
  tfrobust compare none="$R/${name}_none_s*" gaussian="$R/${name}_gaussian_s*" --json $R/${name}_compare.json
  [ $part = steps ] && continue
  tfrobust curves none="$R/${name}_none_s*" gaussian="$R/${name}_gaussian_s*" \
    --png $R/${name}_curves.png --json $R/${name}_curves.json
done

# The real:generated ratio sweep on the lowdata500 protocol (Gowal et al. sweep the generated share of each
# batch): Gaussian data at generated shares 0.3, 0.5 and 0.9, beside the rows above (0: none, 0.7: gaussian).
# Every ratio trains for the same 600 steps.
if [[ " $parts " == *" ratio "* ]]; then
  for s in ${SEEDS:-0 1 2}; do
    for f in 0.3 0.5 0.9; do
      out=runs/gowal_lowdata500_ratio${f}_s$s dest=$R/lowdata500_ratio${f}_s$s
      collected $dest eval.json && continue
      train $out recipes/gowal2021_cifar10_linf_trades_gaussian_resnet20.py --variant lowdata500 \
        --set data.seed=$s --set data.generated_fraction=$f
      evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
  tfrobust compare "0.0=$R/lowdata500_none_s*" "0.3=$R/lowdata500_ratio0.3_s*" "0.5=$R/lowdata500_ratio0.5_s*" \
    "0.7=$R/lowdata500_gaussian_s*" "0.9=$R/lowdata500_ratio0.9_s*" --json $R/lowdata500_ratio_compare.json
  # The robust validation curves, each share's mean over the seeds collected so far.
  tfrobust curves "0.0=$R/lowdata500_none_s*" "0.3=$R/lowdata500_ratio0.3_s*" "0.5=$R/lowdata500_ratio0.5_s*" \
    "0.7=$R/lowdata500_gaussian_s*" "0.9=$R/lowdata500_ratio0.9_s*" --png $R/lowdata500_ratio_curves.png \
    --json $R/lowdata500_ratio_curves.json
fi

# The control with real extra data (the `steps` protocol): the other 40k training images, unlabelled, pseudo-labelled
# by a clean ResNet-20 trained on the same first 10k (Suri's standard recipe with fixed augmentation), as the 70%
# "external" part. It tells whether extra data can help at this scale at all.
if [[ " $parts " == *" heldout "* ]]; then
  held=runs/cifar10_train_10000_50000_unlabelled.npz
  teacher=runs/gowal_teacher_standard_fixed_s0
  todo=
  for s in ${SEEDS:-0 1 2}; do collected $R/steps_heldout_s$s eval.json pseudo_labels.json || todo="$todo $s"; done
  if [ -n "$todo" ]; then
    # A fresh machine retrains the teacher (runs are not bitwise reproducible across machines): each student's
    # teacher.json (its teacher's test accuracy) is collected with it, and the committed teacher's files stay.
    [ -f $held ] || python docs/results/gowal/heldout_set.py --data-dir $D --start 10000 --out $held
    train $teacher recipes/suri2021_cifar10_standard_fixed_resnet20.py --variant small --set data.seed=0
    evaluate $teacher eval_clean10k.json --attacks none --n 10000
    collected $R/teacher_standard_fixed_s0 eval_clean10k.json || docs/results/collect.sh $teacher $R/teacher_standard_fixed_s0
  fi
  for s in $todo; do
    out=runs/gowal_steps_heldout_s$s dest=$R/steps_heldout_s$s
    train $out recipes/gowal2021_cifar10_linf_trades_external_resnet20.py --variant small --set data.seed=$s \
      --set data.generated=$held --set data.teacher=$teacher
    evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
    docs/results/collect.sh $out $dest
    cp $out/generated/teacher.json $dest/teacher.json
    python docs/results/gowal/heldout_label_accuracy.py --data-dir $D --run $out --start 10000 \
      --json $dest/pseudo_labels.json
  done
  tfrobust compare none="$R/steps_none_s*" gaussian="$R/steps_gaussian_s*" heldout="$R/steps_heldout_s*" \
    --json $R/steps_heldout_compare.json
fi

# TRADES' BatchNorm passes on the lowdata500 baseline: every row above trained one joint pass over clean and
# adversarial images (train.trades_bn=joint, the small variants' setting); here the clean and adversarial images
# pass separately, each normalised with its own statistics (as Zhang et al.'s code) and both updating the moving
# ones, or only the adversarial pass updates them (Gowal et al.'s code).
if [[ " $parts " == *" trades_bn "* ]]; then
  for s in ${SEEDS:-0 1 2}; do
    for b in separate adversarial; do
      out=runs/gowal_lowdata500_none_bn${b}_s$s dest=$R/lowdata500_none_bn${b}_s$s
      collected $dest eval.json && continue
      train $out recipes/gowal2021_cifar10_linf_trades_none_resnet20.py --variant lowdata500 --set data.seed=$s \
        --set train.trades_bn=$b
      evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
  tfrobust compare joint="$R/lowdata500_none_s*" separate="$R/lowdata500_none_bnseparate_s*" \
    adversarial="$R/lowdata500_none_bnadversarial_s*" --json $R/lowdata500_trades_bn_compare.json
fi

# MultiTargeted-20 beside PGD-20 on the first 500 test images (Gowal et al. 2019; the MT of Gowal et al. 2021's
# AA+MT): how optimistic the rows' PGD-20 figures are. Every collected lowdata500 run (Linf and L2) that has no
# eval_mt500.json yet and whose model is still in runs/ is evaluated; models trained on an earlier machine are gone,
# so they are listed and skipped. Runs after the loop compare the L2 rows' seeds under both attacks.
if [[ " $parts " == *" mt "* ]]; then
  for dest in $R/lowdata500_*_s[0-9] $R/l2_lowdata500_*_s[0-9]; do
    collected $dest eval_mt500.json && continue
    out=runs/gowal_$(basename $dest)
    [ -f $out/model.keras ] || { echo "mt: $out is not on this machine; $dest keeps PGD-20 only"; continue; }
    evaluate $out eval_mt500.json --attacks pgd,multitargeted --n 500 --no-checks --state-dir $out/eval_mt500_state
    cp $out/eval_mt500.json $dest/
  done
  if compgen -G "$R/l2_lowdata500_none_s*/eval_mt500.json" > /dev/null &&
     compgen -G "$R/l2_lowdata500_gaussian_s*/eval_mt500.json" > /dev/null; then
    tfrobust compare none="$R/l2_lowdata500_none_s*/eval_mt500.json" \
      gaussian="$R/l2_lowdata500_gaussian_s*/eval_mt500.json" --json $R/l2_lowdata500_mt500_compare.json
  fi
fi

# The Gaussian rows the paper's way (its first sufficient condition: generated samples labelled by a non-robust
# classifier): the lowdata500 Gaussian row with its samples pseudo-labelled by a clean ResNet-20 trained on the same
# 500 real images (Suri's standard recipe with fixed augmentation, the small variant's 15 epochs of 78 steps), not
# by the class whose Gaussian drew them. Each student's teacher.json has the teacher's test accuracy and how often
# it gives a sample its generator's class. Each student is also evaluated by PGD-20 and standard AutoAttack (its full
# budget, not the recipe's cheaper eval.apgd_steps / eval.queries) on the first 500 test images, beside the aa500 rows.
if [[ " $parts " == *" pseudo "* ]]; then
  teacher=runs/gowal_teacher500_standard_fixed_s0
  # As for the held-out control: a fresh machine retrains the teacher, and the committed teacher's files stay.
  train $teacher recipes/suri2021_cifar10_standard_fixed_resnet20.py --variant small --set data.seed=0 \
    --set data.n_train=500 --set train.steps_per_epoch=78
  collected $R/teacher500_standard_fixed_s0 history.csv || docs/results/collect.sh $teacher $R/teacher500_standard_fixed_s0
  for s in ${SEEDS:-0 1 2}; do
    out=runs/gowal_lowdata500_gaussianpl_s$s dest=$R/lowdata500_gaussianpl_s$s
    collected $dest eval.json eval_aa500.json teacher.json && continue
    train $out recipes/gowal2021_cifar10_linf_trades_gaussian_resnet20.py --variant lowdata500 --set data.seed=$s \
      --set data.teacher=$teacher
    evaluate $out eval.json --attacks pgd --n 1000 --state-dir $out/eval_state
    evaluate $out eval_aa500.json --attacks pgd,autoattack --apgd-steps 100 --queries 5000 --n 500 --no-checks \
      --state-dir $out/eval_aa500std_state
    docs/results/collect.sh $out $dest
    cp $out/generated/teacher.json $dest/teacher.json
  done
  tfrobust compare none="$R/lowdata500_none_s*" gaussian="$R/lowdata500_gaussian_s*" \
    pseudo="$R/lowdata500_gaussianpl_s*" --json $R/lowdata500_pseudo_compare.json
  # The two labelings paired seed by seed (the compare tables above pair each with no generated data).
  tfrobust compare gaussian="$R/lowdata500_gaussian_s*" pseudo="$R/lowdata500_gaussianpl_s*" \
    --json $R/lowdata500_pseudo_vs_gaussian_compare.json
  if compgen -G "$R/lowdata500aa_none_s*/eval_aa500.json" > /dev/null &&
     compgen -G "$R/lowdata500aa_gaussian_s*/eval_aa500.json" > /dev/null; then
    tfrobust compare none="$R/lowdata500aa_none_s*/eval_aa500.json" \
      gaussian="$R/lowdata500aa_gaussian_s*/eval_aa500.json" pseudo="$R/lowdata500_gaussianpl_s*/eval_aa500.json" \
      --json $R/lowdata500_pseudo_aa500_compare.json
    tfrobust compare gaussian="$R/lowdata500aa_gaussian_s*/eval_aa500.json" \
      pseudo="$R/lowdata500_gaussianpl_s*/eval_aa500.json" --json $R/lowdata500_pseudo_vs_gaussian_aa500_compare.json
  fi
fi

# The lowdata500 rows (Linf) under standard AutoAttack beside PGD-20, on the first 500 test images. Their models
# are gone and training is not bitwise reproducible on this CPU, so these are new runs of the same recipes and
# seeds (lowdata500aa_*), each evaluated by both attacks on the same points; AutoAttack at its standard budget (100
# iterations, 5000 queries; the recipe's eval section asks for 50 and 500, which eval_aa500_reduced.json records).
if [[ " $parts " == *" aa500 "* ]]; then
  for s in ${SEEDS:-0 1 2}; do
    for r in none gaussian; do
      out=runs/gowal_lowdata500aa_${r}_s$s dest=$R/lowdata500aa_${r}_s$s
      collected $dest eval_aa500.json && continue
      train $out recipes/gowal2021_cifar10_linf_trades_${r}_resnet20.py --variant lowdata500 --set data.seed=$s
      evaluate $out eval_aa500.json --attacks pgd,autoattack --apgd-steps 100 --queries 5000 --n 500 --no-checks \
      --state-dir $out/eval_aa500std_state
      docs/results/collect.sh $out $dest
    done
  done
  if compgen -G "$R/lowdata500aa_none_s*/eval_aa500.json" > /dev/null &&
     compgen -G "$R/lowdata500aa_gaussian_s*/eval_aa500.json" > /dev/null; then
    tfrobust compare none="$R/lowdata500aa_none_s*/eval_aa500.json" \
      gaussian="$R/lowdata500aa_gaussian_s*/eval_aa500.json" --json $R/lowdata500aa_compare.json
  fi
fi
