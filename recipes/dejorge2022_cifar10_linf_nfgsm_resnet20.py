"""N-FGSM (de Jorge et al. 2022) single-step adversarial training on CIFAR-10, on a CPU-sized ResNet-20.

de Jorge et al., "Make some noise: reliable and efficient single-step
adversarial training", arXiv 2202.01181: FGSM from uniform noise of radius
2 eps with step eps, not projected back to the eps-ball, avoids the
catastrophic overfitting of FGSM-RS. Their CIFAR-10 setting (PreActResNet-18,
30 epochs, cyclic learning rate up to 0.2, SGD momentum 0.9, weight decay
5e-4, batch 128, pad-4 crop and flip) reaches about 80% clean and 47-48%
under PGD-50-10 at Linf eps=8/255.

Here: ResNet-20 (0.27M parameters), 15 epochs, over all 50k images, which 2
CPU cores can train in hours. The FGSM-RS recipe with the same model and
schedule overfitted catastrophically within the first epochs on this machine
(docs/results/wong2020_cifar10_resnet20_history.csv: clean 32%, PGD-10 1%,
FGSM-RS 53% on training images after 5 epochs). Expect well below the
paper's numbers. The `small` variant trains on one 10k shard.

Runtime: about 6-7 minutes per epoch on 2 otherwise idle CPU cores; resumable.

Observed on this machine (seed 0, not yet understood): this recipe too
overfitted catastrophically in its second epoch (clean 30%, PGD-10 0.4%;
docs/results/dejorge2022_cifar10_resnet20_bnstats_history.csv), while
3-epoch runs on one 10k shard trained normally. Treat it as under
investigation, not as a way to a robust CIFAR-10 model yet.

Command:
    tfrobust train recipes/dejorge2022_cifar10_linf_nfgsm_resnet20.py \
        --data-dir ../shared/datasets --output runs/cifar10_nfgsm
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="dejorge2022_cifar10_linf_nfgsm_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20"),
        # The reference code crafts the attack in train mode (batch statistics);
        # so does this recipe, without updating the moving statistics.
        attack=AttackConfig(name="nfgsm", norm="linf", eps=8 / 255, steps=1, step_size=8 / 255, bn="batch_stats"),
        train=TrainConfig(
            method="nfgsm",
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
