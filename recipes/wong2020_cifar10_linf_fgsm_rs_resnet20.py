"""Wong et al. 2020 fast adversarial training on CIFAR-10, on a CPU-sized ResNet-20.

Wong et al., "Fast is better than free: revisiting adversarial training",
arXiv 2001.03994, Table 1 (CIFAR-10, FGSM-RS row, PreActResNet-18): 83.81%
clean and 46.06% under PGD-50 x 10 at Linf eps=8/255, in 15 epochs with a
cyclic learning rate up to 0.2, alpha=10/255, batch 128, SGD with momentum 0.9
and weight decay 5e-4, pad-4 crop and flip augmentation.

This recipe keeps the method and schedule but uses ResNet-20 (He et al., arXiv
1512.03385; 0.27M parameters against 11.2M), which 2 CPU cores can train over
all 50k images: expect well below the paper's numbers. Augmentation uses the
stateless per-element seeds. The `small` variant trains on one 10k shard.

Runtime: about 6 minutes per epoch on 2 CPU cores (full variant); resumable.

Observed on this machine (seed 0): catastrophic overfitting from the first
epochs; after 5 epochs clean accuracy 32%, PGD-10 about 1%, and accuracy on
FGSM-RS examples (53%) above clean accuracy, so the run was stopped
(docs/results/wong2020_cifar10_resnet20_history.csv). Use the N-FGSM recipe,
dejorge2022_cifar10_linf_nfgsm_resnet20.py, for a CIFAR-10 model.

Command:
    tfrobust train recipes/wong2020_cifar10_linf_fgsm_rs_resnet20.py \
        --data-dir ../shared/datasets --output runs/cifar10_fgsm_rs
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="wong2020_cifar10_linf_fgsm_rs_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20"),
        attack=AttackConfig(name="fgsm_rs", norm="linf", eps=8 / 255, steps=1, step_size=10 / 255),
        train=TrainConfig(
            method="fgsm_rs",
            epochs=5 if small else 15,
            optimizer="sgd",
            learning_rate=0.2,
            momentum=0.9,
            weight_decay=5e-4,
            lr_schedule="cyclic",
            val_n=500,
            val_steps=10,
        ),
        eval=EvalConfig(attacks=("fgsm", "pgd", "pgd_margin"), steps=50, restarts=10 if not small else 1,
                        step_size=2 / 255, n=1000),
    )
