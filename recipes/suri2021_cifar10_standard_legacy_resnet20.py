"""Suri's "standard + augmentation" row: clean training with the PyTorch+NumPy worker-seeding bug reproduced (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 94.72%, Linf 8/255 0.00%.

Command:
    tfrobust train recipes/suri2021_cifar10_standard_legacy_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_standard_legacy_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"data.augment": "legacy"}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_standard_none_resnet20.py", variant, CHANGE, __doc__)
