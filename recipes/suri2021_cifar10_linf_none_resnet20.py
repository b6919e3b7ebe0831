"""Suri's robust Linf row without augmentation: PGD training at 8/255, evaluated at 8/255 and 16/255 (CIFAR-10, ResNet-20).

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note); the protocol, the seeds and the caveats are in
`suri2021_cifar10_standard_none_resnet20.py`. This row changes only what
`CHANGE` lists.

Published (the blog's table, ResNet-50 on all of CIFAR-10, one run):
clean 79.52%, PGD 8/255 44.37%, 16/255 15.68%.

Command:
    tfrobust train recipes/suri2021_cifar10_linf_none_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_linf_none_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"train.method": "pgd", "attack.norm": "linf", "attack.eps": 8 / 255, "eval.eps": (8 / 255, 16 / 255),
          "train.val_steps": 10}


def get_config(variant="full"):
    return derive_recipe(__file__, "suri2021_cifar10_standard_none_resnet20.py", variant, dict(CHANGE, **{"train.epochs": 10 if variant == "small" else 30}), __doc__)
