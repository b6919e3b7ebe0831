"""The main job: PGD adversarial training on MNIST at Linf eps=0.3, on 2 CPU cores.

Method: PGD-AT (Madry et al., "Towards deep learning models resistant to
adversarial attacks", arXiv 1706.06083) with a linear eps warm-up, on a
widened version of Wong et al.'s small MNIST CNN (arXiv 2001.03994). PGD
training with a warm-up does not overfit catastrophically the way FGSM training
can, and its robust accuracy holds under more steps and restarts (see the
README's convergence table).

Expected (full variant, measured here): see README "Results", produced by
`tfrobust main`. Runtime: about 5 minutes of training on 2 CPU cores.

Command:
    tfrobust main
    tfrobust train recipes/tfrobust_mnist_linf_pgd_cnn.py --output runs/main
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    epochs = 1 if small else 6
    return Recipe(
        name="tfrobust_mnist_linf_pgd_cnn" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="mnist", batch_size=100, n_train=2000 if small else None),
        model=ModelConfig(name="wong_cnn", width=2),
        # 7 steps of 0.1 let the attack cross the ball (0.6 > 2 eps) and
        # revisit its edge; the warm-up keeps the first epochs trainable.
        attack=AttackConfig(name="pgd", norm="linf", eps=0.3, steps=2 if small else 7, step_size=0.1),
        train=TrainConfig(
            method="pgd",
            epochs=epochs,
            optimizer="adam",
            learning_rate=1e-3,
            lr_schedule="cyclic",
            eps_warmup_epochs=0.5 if small else 2.0,
            val_n=200 if small else 1000,
            val_steps=2 if small else 10,
        ),
        eval=EvalConfig(
            attacks=("fgsm", "pgd", "pgd_margin", "autoattack"),
            steps=3 if small else 50,
            restarts=1 if small else 10,
            step_size=0.01,
            apgd_steps=3 if small else 100,
            queries=20 if small else 5000,
            n=200 if small else 1000,
            checks="quick" if small else "full",
        ),
    )
