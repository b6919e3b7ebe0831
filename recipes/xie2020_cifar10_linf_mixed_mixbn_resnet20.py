"""Xie & Yuille's mixed clean+adversarial training with MixBN (separate BatchNorm per domain), on CIFAR-10 ResNet-20.

Xie & Yuille, "Intriguing properties of adversarial training at scale",
arXiv 1906.03787 (ICLR 2020): on ImageNet, with BatchNorm,
training on clean and adversarial images together is much less robust than
adversarial-only training ("simply removing clean images from training data
largely boosts adversarial robustness, i.e., 18.3%", abstract). Their tables
are ImageNet ResNet-152 under targeted PGD; we could not read their per-row
numbers, so none are quoted here. This recipe is the CIFAR-10 adaptation:
every BatchNorm has a clean and an adversarial branch (statistics and
affine parameters); the attack and the evaluation use the adversarial one,
as in the paper (their "MBN").

Fixed CPU protocol (`small`): ResNet-20, one 10k shard, 10 epochs, PGD-3
at 8/255, cyclic learning rate; compare with the plain-BN and adversarial-only
recipes of the same prefix under the same budget. `full`: all 50k images,
30 epochs.

Command:
    tfrobust train recipes/xie2020_cifar10_linf_mixed_mixbn_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/xie_mixbn_s0
"""

from tfrobust.config import derive_recipe

# The same protocol as the plain-BN mixed recipe; only this changes.
CHANGE = {"model.batch_norm": "mixbn"}


def get_config(variant="full"):
    return derive_recipe(__file__, "xie2020_cifar10_linf_mixed_bn_resnet20.py", variant, CHANGE, __doc__)
