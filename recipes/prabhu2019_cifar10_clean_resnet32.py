"""Prabhu et al.'s clean base model: standard training of ResNet-32 on CIFAR-10.

Prabhu, Mohapatra, Yu, Pratap, Vikram & Mukherjee (Prabhu et al.),
"Understanding adversarial robustness through loss landscape geometries",
arXiv 1907.09061: a clean CIFAR-10 ResNet-32 is fine-tuned on its training set
augmented 1:1 with FGSM, PGD or stAdv examples, and the four models are
compared by clean and adversarial accuracy (Table 1), 1-SSIM per attack
(Table 2) and filter-normalised loss landscapes (Figure 1). We could not read
the paper's tables from here, so no published number is quoted. This recipe
trains the base; the `prabhu2019_cifar10_finetune_*` recipes start from it.

Evaluation as their Table 1: FGSM at 8/255 and PGD-10 at 1/255 (both radii are
run for both attacks), and stAdv with its default flow bound.

`small`: one 10k shard, 10 epochs; `full`: all 50k images, 100 epochs.

Command:
    tfrobust train recipes/prabhu2019_cifar10_clean_resnet32.py --variant small \
        --data-dir ../shared/datasets --output runs/prabhu_clean
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="prabhu2019_cifar10_clean_resnet32" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet32"),
        attack=AttackConfig(name="fgsm", norm="linf", eps=8 / 255),
        train=TrainConfig(method="standard", epochs=10 if small else 100, optimizer="sgd", learning_rate=0.1,
                          momentum=0.9, weight_decay=5e-3, lr_schedule="cosine", val_n=500, val_steps=0),
        eval=EvalConfig(attacks=("fgsm", "pgd", "stadv"), eps=(8 / 255, 1 / 255), steps=10, restarts=1,
                        step_size=0.25 / 255, n=1000, checks="quick"),
    )
