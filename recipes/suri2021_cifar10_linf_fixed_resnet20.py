"""Suri's robust Linf row with stateless per-element augmentation: PGD training at 8/255, evaluated at 8/255 and 16/255 (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 86.73%, PGD 8/255 51.88% (51.89% in the experiment repository's results.md), 16/255 17.57%.

Command:
    tfrobust train recipes/suri2021_cifar10_linf_fixed_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_linf_fixed_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"data.augment": "fixed"}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_linf_none_resnet20.py", variant, CHANGE, __doc__)
