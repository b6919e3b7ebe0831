"""Gowal et al.'s low-quality generator under L2 128/255: 70% class-conditional Gaussian data, on CIFAR-10 ResNet-20.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468.
The L2 counterpart of `gowal2021_cifar10_linf_trades_gaussian_resnet20.py`:
the L2 baseline (`gowal2021_cifar10_l2_trades_none_resnet20.py`) with 30% real
and 70% Gaussian images per batch, label smoothing 0.1 on the generated part.

The real:generated ratio sweep of the paper is `--set data.generated_fraction=F`
on this recipe or its Linf sibling (F = 0 is the baseline, F = 1 generated only).

Command:
    tfrobust train recipes/gowal2021_cifar10_l2_trades_gaussian_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/gowal_l2_gaussian_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"data.generated": "gaussian", "data.generated_fraction": 0.7, "train.generated_label_smoothing": 0.1}


def get_config(variant="full"):
    return derive_recipe(__file__, "gowal2021_cifar10_l2_trades_none_resnet20.py", variant, CHANGE, __doc__)
