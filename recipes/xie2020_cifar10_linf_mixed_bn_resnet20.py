"""Xie & Yuille's mixed clean+adversarial training with plain BatchNorm (their baseline), on CIFAR-10 ResNet-20.

Xie & Yuille, "Intriguing properties of adversarial training at scale",
arXiv 1906.03787 (ICLR 2020): on ImageNet, with BatchNorm,
training on clean and adversarial images together is much less robust than
adversarial-only training ("simply removing clean images from training data
largely boosts adversarial robustness, i.e., 18.3%", abstract). Their tables
are ImageNet ResNet-152 under targeted PGD; we could not read their per-row
numbers, so none are quoted here. This recipe is the CIFAR-10 adaptation:
one BatchNorm normalises batches that are half clean, half PGD.

Fixed CPU protocol (`small`): ResNet-20, one 10k shard, 10 epochs, PGD-3
at 8/255, cyclic learning rate; compare with the MixBN and adversarial-only
recipes of the same prefix under the same budget. `full`: all 50k images,
30 epochs. Evaluation: untargeted PGD-20, the paper's targeted PGD (towards
a random other class per example, `pgd-targeted`) and APGD-T, on the first
1000 test images.

Command:
    tfrobust train recipes/xie2020_cifar10_linf_mixed_bn_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/xie_bn_s0
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig

def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="xie2020_cifar10_linf_mixed_bn_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20", batch_norm="bn"),
        attack=AttackConfig(name="pgd", norm="linf", eps=8 / 255, steps=3),
        train=TrainConfig(method="pgd", clean_ratio=0.5, epochs=10 if small else 30, optimizer="sgd",
                          learning_rate=0.2, momentum=0.9, weight_decay=5e-3, lr_schedule="cyclic",
                          val_n=500, val_steps=10),
        eval=EvalConfig(attacks=("pgd", "pgd-targeted", "apgd-t"), steps=20, restarts=1, step_size=2 / 255,
                        apgd_steps=50,
                        n=1000, checks="quick"),
    )
