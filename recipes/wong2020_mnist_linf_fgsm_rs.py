"""Wong et al. 2020, "Fast is better than free: revisiting adversarial training".

arXiv 2001.03994, Section 5 / Table 1 (MNIST row): FGSM with a random start
(FGSM-RS) at Linf eps=0.3, step alpha=0.375, 10 epochs, batch 100, Adam with a
cyclic learning rate up to 5e-3, on their small CNN (Conv 16-32, FC 100).

Published: 98.50% clean, 88.77% under PGD-50 with 10 restarts (step 0.01).
AutoAttack later measured 82.93% on their model (Croce & Hein 2020). Some seeds
overfit catastrophically: robust accuracy collapses to near 0 late in training.
That is the method's known behaviour, and the evaluation is not weakened for it.

Runtime: about 2 minutes per seed on 2 CPU cores (full variant).

Command:
    tfrobust train recipes/wong2020_mnist_linf_fgsm_rs.py --set seed=0 --output runs/wong_s0
    tfrobust eval runs/wong_s0 --attacks pgd --steps 50 --restarts 10 --n 10000
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="wong2020_mnist_linf_fgsm_rs" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="mnist", batch_size=100, n_train=2000 if small else None),
        model=ModelConfig(name="wong_cnn"),
        attack=AttackConfig(name="fgsm_rs", norm="linf", eps=0.3, steps=1, step_size=0.375),
        train=TrainConfig(
            method="fgsm_rs",
            epochs=1 if small else 10,
            optimizer="adam",
            learning_rate=5e-3,
            lr_schedule="cyclic",
            val_n=200 if small else 1000,
            val_steps=2 if small else 10,
        ),
        eval=EvalConfig(
            attacks=("pgd",),
            steps=3 if small else 50,
            restarts=1 if small else 10,
            step_size=0.01,
            n=200 if small else 10000,
        ),
    )
