"""Suri's robust L2 row with stateless per-element augmentation: PGD training at L2 eps 1.0, evaluated at 0.5 and 1.0 (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 81.07%, PGD L2 0.5 67.62%, 1.0 51.22%.

Command:
    tfrobust train recipes/suri2021_cifar10_l2_fixed_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_l2_fixed_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"data.augment": "fixed"}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_l2_none_resnet20.py", variant, CHANGE, __doc__)
