"""Suri's robust L2 row without augmentation: PGD training at L2 eps 1.0, evaluated at 0.5 and 1.0 (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 78.19%, PGD L2 0.5 61.74%, 1.0 42.83%.

Command:
    tfrobust train recipes/suri2021_cifar10_l2_none_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_l2_none_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"attack.norm": "l2", "attack.eps": 1.0, "eval.eps": (0.5, 1.0)}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_linf_none_resnet20.py", variant, CHANGE, __doc__)
