"""Gowal et al.'s main setting: 70% of each batch from an external generated set (npz), on CIFAR-10 ResNet-20.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468.
The external-data row of the fixed CPU protocol: the baseline recipe
(`gowal2021_cifar10_linf_trades_none_resnet20.py`: TRADES beta 6, EMA weights,
the same number of steps) with 30% real and 70% generated images per batch from an npz file with
`image` (uint8 NHWC) and `label`, the format of the paper's published DDPM
samples, label smoothing 0.1 on the generated part only. Set the file with
`--set data.generated=PATH`; add `--set data.teacher=MODEL` to pseudo-label a
set without labels. No such set is bundled (the machines are offline).

Command:
    tfrobust train recipes/gowal2021_cifar10_linf_trades_external_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/gowal_external_s0
"""

from tfrobust.config import derive_recipe

# The baseline's protocol; only the generated data changes.
CHANGE = {"data.generated": "cifar10_ddpm.npz", "data.generated_fraction": 0.7,
          "train.generated_label_smoothing": 0.1}


def get_config(variant="full"):
    return derive_recipe(__file__, "gowal2021_cifar10_linf_trades_none_resnet20.py", variant, CHANGE, __doc__)
