"""PGD adversarial training on CIFAR-10 at Linf eps=8/255 (Madry et al. 2018).

Madry et al., "Towards deep learning models resistant to adversarial attacks",
arXiv 1706.06083, Table 5 (CIFAR-10, "PGD" training, wide ResNet): 87.3% clean,
45.8% under PGD-20 at eps=8/255. This recipe uses ResNet-20 (He et al.,
arXiv 1512.03385), which is far smaller, with PGD-7 training (step 2/255),
SGD with momentum and a piecewise schedule, pad-4-crop and flip augmentation
with stateless per-element seeds.

The `small` variant is the fixed CPU protocol: one CIFAR-10 train shard
(10k images) and a few epochs; its numbers are far below the paper's.

Command:
    tfrobust train recipes/madry2018_cifar10_linf_pgd_resnet20.py --variant small \
        --data-dir ../shared/datasets --output runs/cifar_small
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="madry2018_cifar10_linf_pgd_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20"),
        attack=AttackConfig(name="pgd", norm="linf", eps=8 / 255, steps=7, step_size=2 / 255),
        train=TrainConfig(
            method="pgd",
            epochs=5 if small else 200,
            optimizer="sgd",
            learning_rate=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            lr_schedule="piecewise",
            val_n=500 if small else 1000,
            val_steps=10,
        ),
        eval=EvalConfig(attacks=("fgsm", "pgd", "pgd_margin"), steps=20 if small else 50,
                        restarts=1 if small else 5, step_size=2 / 255, n=1000),
    )
