"""Xie & Yuille's depth sweep, ResNet-110 row: adversarial-only PGD-3 training on CIFAR-10 under the ResNet-20 protocol.

Xie & Yuille, "Intriguing properties of adversarial training at scale",
arXiv 1906.03787 (ICLR 2020), found that adversarial training keeps gaining
from depth long after clean training saturates (their ImageNet ResNets up to
638 layers). This CIFAR-10 sweep trains the CIFAR ResNets of He et al. at
depths 20 (`xie2020_cifar10_linf_advonly_resnet20.py`), 56 and 110 with
everything else fixed: the protocol of the adversarial-only recipe, only
`model.name` changes. We could not read the paper's numbers, so none are
quoted. ResNet-110 costs about 6x the FLOPs of ResNet-20 per image.

Command:
    tfrobust train recipes/xie2020_cifar10_linf_advonly_resnet110.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/xie_advonly110_s0
"""

from tfrobust.config import derive_recipe

CHANGE = {"model.name": "resnet110"}


def get_config(variant="full"):
    return derive_recipe(__file__, "xie2020_cifar10_linf_advonly_resnet20.py", variant, CHANGE, __doc__)
