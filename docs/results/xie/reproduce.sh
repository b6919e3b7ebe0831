#!/bin/bash
# Xie & Yuille small CPU protocol: plain BN vs MixBN vs adversarial-only, seeds 0-2, and the depth sweep. Run
# from the repository root:
#   docs/results/xie/reproduce.sh [rows] [depth] [bnstats]      (no argument: all three)
# Runs already collected in docs/results/xie/<row>_s<seed>/ are skipped, the others resume from runs/
# (docs/results/lib.sh). Seed 0 also ran the BN-statistics evaluations (eval_batchstats.json,
# eval_cleanbranch.json, mixbn_stats.*); seeds 1-2 run the training and the recipe's evaluation (eval.json).
#
# The recipe.json of bn_s0, bn_s1, mixbn_s0 and advonly_s0 was regenerated after the machine that trained them
# was gone (RECIPE_REGENERATED.txt beside it); the other runs' are their own.
set -e
. docs/results/lib.sh
R=docs/results/xie
parts=${*:-rows depth bnstats}
check_parts "$parts" rows depth bnstats
if [[ " $parts " == *" rows "* ]]; then
for s in ${SEEDS:-0 1 2}; do
  for r in bn:mixed_bn mixbn:mixed_mixbn advonly:advonly; do
    name=${r%%:*} file=${r#*:}
    out=runs/xie_${name}_s$s dest=$R/${name}_s$s
    files=eval.json; [ $s = 0 ] && files="eval.json eval_batchstats.json"
    [ $s$name = 0mixbn ] && files="$files eval_cleanbranch.json mixbn_stats.json"
    collected $dest $files && continue
    train $out recipes/xie2020_cifar10_linf_${file}_resnet20.py --variant small --set data.seed=$s
    evaluate $out eval.json --attacks pgd,pgd-targeted --n 1000 --state-dir $out/eval_state
    if [ $s = 0 ]; then
      evaluate $out eval_batchstats.json --attacks pgd --n 1000 --bn batch_stats --no-checks
    fi
    if [ $s$name = 0mixbn ]; then
      evaluate $out eval_cleanbranch.json --attacks pgd,pgd-targeted --n 1000 --bn-branch clean --no-checks
      [ -f $out/mixbn_stats.json ] || tfrobust mixbn-stats $out --png $out/mixbn_stats.png --json $out/mixbn_stats.json
    fi
    docs/results/collect.sh $out $dest
  done
done
# _s? and not _s*: the bnstats part's <row>_s<seed>_retrained/ folders are other models.
tfrobust compare bn="$R/bn_s?" mixbn="$R/mixbn_s?" advonly="$R/advonly_s?" --json $R/compare.json
tfrobust compare mixbn="$R/mixbn_s?" advonly="$R/advonly_s?" --json $R/compare_mixbn_vs_advonly.json
tfrobust curves bn="$R/bn_s?" mixbn="$R/mixbn_s?" advonly="$R/advonly_s?" \
  --png $R/curves_val_robust.png --json $R/curves_val_robust.json
fi

# The depth sweep, adversarial-only as the paper's: ResNet-56 (about 47 min a run on 2 idle cores) and ResNet-110
# (about 70 min of training and 16 of evaluation on 2 idle cores), beside the ResNet-20 runs above (advonly_s*).
# DEPTHS="56" leaves ResNet-110 out.
if [[ " $parts " == *" depth "* ]]; then
  for s in ${SEEDS:-0 1 2}; do
    for d in ${DEPTHS:-56 110}; do
      out=runs/xie_advonly${d}_s$s dest=$R/advonly${d}_s$s
      collected $dest eval.json && continue
      train $out recipes/xie2020_cifar10_linf_advonly_resnet$d.py --variant small --set data.seed=$s
      evaluate $out eval.json --attacks pgd,pgd-targeted --n 1000 --state-dir $out/eval_state
      docs/results/collect.sh $out $dest
    done
  done
  tfrobust compare resnet20="$R/advonly_s?" resnet56="$R/advonly56_s?" resnet110="$R/advonly110_s?" \
    --json $R/depth_compare.json
fi

# The BN-statistics analysis of seeds 1-2 (seed 0's is in the rows above). Those seeds' models are gone and training
# is not bitwise reproducible on this CPU, so each row is trained again with the same recipe and seed, into
# <row>_s<seed>_retrained/, and evaluated with the moving averages and with each batch's own statistics on the same
# points; MixBN also through its clean branch, with its statistics plotted.
if [[ " $parts " == *" bnstats "* ]]; then
  for s in ${SEEDS:-1 2}; do
    for r in bn:mixed_bn mixbn:mixed_mixbn advonly:advonly; do
      name=${r%%:*} file=${r#*:}
      out=runs/xie_${name}_s${s}_retrained dest=$R/${name}_s${s}_retrained
      files="eval.json eval_batchstats.json"
      [ $name = mixbn ] && files="$files eval_cleanbranch.json mixbn_stats.json"
      collected $dest $files && continue
      train $out recipes/xie2020_cifar10_linf_${file}_resnet20.py --variant small --set data.seed=$s
      evaluate $out eval.json --attacks pgd,pgd-targeted --n 1000 --state-dir $out/eval_state
      evaluate $out eval_batchstats.json --attacks pgd --n 1000 --bn batch_stats --no-checks
      if [ $name = mixbn ]; then
        evaluate $out eval_cleanbranch.json --attacks pgd,pgd-targeted --n 1000 --bn-branch clean --no-checks
        [ -f $out/mixbn_stats.json ] || tfrobust mixbn-stats $out --png $out/mixbn_stats.png --json $out/mixbn_stats.json
      fi
      docs/results/collect.sh $out $dest
    done
  done
  # Moving averages against each batch's own statistics, paired by seed (seed 0 from the rows above), per row; and
  # MixBN's clean branch against its adversarial one.
  for name in bn mixbn advonly; do
    runs="$R/${name}_s0 $R/${name}_s?_retrained"
    tfrobust compare moving="$(files_in "$runs" eval.json)" batch="$(files_in "$runs" eval_batchstats.json)" \
      --json $R/bnstats_${name}_compare.json
  done
  runs="$R/mixbn_s0 $R/mixbn_s?_retrained"
  tfrobust compare adversarial="$(files_in "$runs" eval.json)" clean="$(files_in "$runs" eval_cleanbranch.json)" \
    --json $R/bnstats_mixbn_branch_compare.json
fi
