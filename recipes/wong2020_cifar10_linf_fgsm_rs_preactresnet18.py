"""Wong et al. 2020 FGSM-RS adversarial training of PreActResNet-18 on CIFAR-10, at the paper's scale.

Wong, Rice & Kolter, "Fast is better than free: revisiting adversarial
training", arXiv 2001.03994: PreActResNet-18 (He et al., arXiv 1603.05027)
trained for 15 epochs on all 50k images with FGSM from a uniform random start
in the eps-ball, step 10/255, at Linf eps = 8/255; published 83.34% clean,
46.06% under PGD-50 x 10 restarts, and 43.21% under AutoAttack (the reference
AutoAttack README's entry for this model, full test set).

The setting follows their code (locuslab/fast_adversarial,
`CIFAR10/train_fgsm.py` with `--early-stop`): batch 128, pad-4 crop and
horizontal flip, SGD with momentum 0.9, a triangular learning rate from 0 to
0.2 and back over the run (their `CyclicLR` peaks half way; the paper's text
describes a peak at 2/5), and the guard against catastrophic overfitting:
PGD-5 with step 2/255 on each epoch's first training batch, stopping when its
robust accuracy falls by more than 0.2 and keeping the previous epoch's model.

Where this recipe differs, and why:
- Weight decay 5e-3: Keras' decay is decoupled (each step shrinks weights by
  lr * wd), and their coupled 5e-4 under momentum 0.9 shrinks by about
  lr * 5e-4 / (1 - 0.9) (see `TrainConfig.weight_decay`).
- Precision: they train in float16 with NVIDIA apex (`--opt-level O2`); here
  the network computes in bfloat16 (Keras' "mixed_bfloat16": float32
  variables, bfloat16 passes) and so does the FGSM step: 1.9x the float32
  speed on 2 CPU cores with AMX (docs/RESULTS.md). Evaluation is in float32.
- The FGSM step runs with batch statistics, as their attack in train mode, but
  never updates BatchNorm's moving statistics (theirs does, once per attack
  pass); the guard attacks with the moving statistics (theirs in train mode).
- Their PreActBlock's projection shortcut convolves the block's raw input;
  tfrobust's convolves the pre-activated input (He et al.'s and most other
  code's choice). The parameter count is the same.
- Initialisation: Keras' (He-normal convolutions, a Glorot-uniform classifier)
  where theirs is PyTorch's default (uniform with variance 1 / (3 fan_in));
  `model.init="torch"` is not implemented for this model.
- Augmentation draws from stateless per-element seeds (`data.augment="fixed"`)
  and a validation of 250 test images (PGD-10) after each epoch traces the
  robust-accuracy curve; neither exists in their code.

Runtime: about 13 minutes per epoch on 2 otherwise idle CPU cores (3.3
hours for the 15 epochs); checkpoints every 100 steps, and a killed run resumes exactly. The
`small` variant (one 10k shard, 3 epochs) is for trying the pipeline.

Commands (docs/results/wong2020_preactresnet18/reproduce.sh runs them all):
    tfrobust train recipes/wong2020_cifar10_linf_fgsm_rs_preactresnet18.py \\
        --data-dir ../shared/datasets --output runs/wong2020_preactresnet18
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="wong2020_cifar10_linf_fgsm_rs_preactresnet18" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="fixed", n_train=10000 if small else None),
        model=ModelConfig(name="preact_resnet18"),
        attack=AttackConfig(name="fgsm_rs", norm="linf", eps=8 / 255, steps=1, step_size=10 / 255,
                            bn="batch_stats", precision="bfloat16"),
        train=TrainConfig(
            method="fgsm_rs",
            epochs=3 if small else 15,
            optimizer="sgd",
            learning_rate=0.2,
            lr_schedule="cyclic",
            lr_peak=0.5,
            momentum=0.9,
            weight_decay=5e-3,
            precision="mixed_bfloat16",
            overfit_guard=5,
            overfit_guard_drop=0.2,
            val_n=250,
            val_steps=10,
            checkpoint_every=100,
        ),
        eval=EvalConfig(attacks=("pgd", "autoattack"), steps=50, restarts=10, step_size=2 / 255,
                        n=200 if small else 1000),
    )
