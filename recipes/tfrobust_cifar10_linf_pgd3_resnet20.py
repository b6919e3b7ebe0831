"""The shipped CIFAR-10 model: PGD-3 adversarial training of ResNet-20 at Linf eps=8/255, sized for 2 CPU cores.

Madry et al., "Towards deep learning models resistant to adversarial
attacks", arXiv 1706.06083, trained with PGD-7; this recipe uses 3 steps of
2.5 eps / 3 from a random start, which costs 4 forward/backward passes per
step instead of 8. Both single-step recipes (FGSM-RS, N-FGSM) overfitted
catastrophically on full-data ResNet-20 here (see their docstrings); a
multi-step attack is the conservative choice when there is no budget for a
second try.

Schedule as in Wong et al. 2020 (cyclic learning rate up to 0.2 over 10
epochs, SGD momentum 0.9, batch 128, pad-4 crop and flip with stateless
per-element seeds). Weight decay: Keras applies it decoupled from the
momentum, so 5e-3 here decays about as much per step as PyTorch's coupled
5e-4 with momentum 0.9 (steady-state factor 1 / (1 - momentum) = 10).

Runtime: about 10 minutes per epoch on 2 otherwise idle CPU cores;
resumable after every epoch. The `small` variant trains 2 epochs on one
10k shard.

Command:
    tfrobust train recipes/tfrobust_cifar10_linf_pgd3_resnet20.py \
        --data-dir ../shared/datasets --output runs/cifar10_pgd3
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="tfrobust_cifar10_linf_pgd3_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20"),
        attack=AttackConfig(name="pgd", norm="linf", eps=8 / 255, steps=3),
        train=TrainConfig(
            method="pgd",
            epochs=2 if small else 10,
            optimizer="sgd",
            learning_rate=0.2,
            momentum=0.9,
            weight_decay=5e-3,
            lr_schedule="cyclic",
            val_n=500,
            val_steps=10,
        ),
        eval=EvalConfig(attacks=("fgsm", "pgd", "autoattack"), steps=50, restarts=1, step_size=2 / 255,
                        n=1000 if not small else 200),
    )
