"""Xie & Yuille's adversarial-only training (no clean images), on CIFAR-10 ResNet-20.

Xie & Yuille, "Intriguing properties of adversarial training at scale",
arXiv 1906.03787 (ICLR 2020): on ImageNet, with BatchNorm,
training on clean and adversarial images together is much less robust than
adversarial-only training ("simply removing clean images from training data
largely boosts adversarial robustness, i.e., 18.3%", abstract). Their tables
are ImageNet ResNet-152 under targeted PGD; we could not read their per-row
numbers, so none are quoted here. This recipe is the CIFAR-10 adaptation:
every example of every batch is attacked (clean_ratio 0): the setting
that the paper found most robust with plain BatchNorm.

Fixed CPU protocol (`small`): ResNet-20, one 10k shard, 10 epochs, PGD-3
at 8/255, cyclic learning rate; compare with the plain-BN and MixBN mixed
recipes of the same prefix under the same budget. `full`: all 50k images,
30 epochs.

Command:
    tfrobust train recipes/xie2020_cifar10_linf_advonly_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/xie_advonly_s0
"""

from tfrobust.config import derive_recipe

# The same protocol as the plain-BN mixed recipe; only this changes.
CHANGE = {"train.clean_ratio": 0.0}


def get_config(variant="full"):
    return derive_recipe(__file__, "xie2020_cifar10_linf_mixed_bn_resnet20.py", variant, CHANGE, __doc__)
