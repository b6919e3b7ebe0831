"""Suri's robust L2 row with the PyTorch+NumPy worker-seeding bug reproduced: PGD training at L2 eps 1.0, evaluated at 0.5 and 1.0 (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 80.56%, PGD L2 0.5 67.20%, 1.0 51.14%.

Command:
    tfrobust train recipes/suri2021_cifar10_l2_legacy_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_l2_legacy_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"data.augment": "legacy"}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_l2_none_resnet20.py", variant, CHANGE, __doc__)
