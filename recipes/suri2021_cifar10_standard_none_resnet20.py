"""Suri's "standard" row: clean training without augmentation (CIFAR-10, ResNet-20); the base of the suri2021 recipes.

Suri, "Reassessing adversarial training with fixed data augmentation"
(blog note): PyTorch's DataLoader forks its workers with one NumPy RNG state, so
NumPy-based augmentation repeats across workers and across epochs. The note
re-ran standard and adversarial training with no augmentation, with the buggy
augmentation ("augmentation", our `data.augment="legacy"`) and with fixed
augmentation ("fixed", our stateless per-element seeds), and found effects of
0.1-0.5 points that its author warned may be noise ("It is very much
possible that these gains are just coincidental fluctuations"). The nine
suri2021 recipes are its nine rows: {standard, Linf 8/255, L2 1.0} x {none,
legacy, fixed}. Its table (one run per row; ResNet-50 trained with a fork of
MadryLab's `robustness` package on all of CIFAR-10; evaluated with PGD, which
the repository's README shows as 20 steps of 1/255 at Linf 8/255), clean /
robust %:

    | row      | none          | augmentation  | fixed augmentation |
    | standard | 89.14 / 0.00  | 94.72 / 0.00  | 94.62 / 0.00       |
    | Linf     | 79.52 / 44.37 / 15.68 | 86.32 / 51.40 / 17.48 | 86.73 / 51.88 / 17.57 |
    | L2       | 78.19 / 61.74 / 42.83 | 80.56 / 67.20 / 51.14 | 81.07 / 67.62 / 51.22 |

(Linf: PGD at 8/255 then 16/255; L2: at 0.5 then 1.0; standard: Linf 8/255.)
Sources: the blog's source, iamgroot42/personal-website
`content/post/advrob_aug/index.md`, and iamgroot42/aug_robust_blogpost
`results.md`. That repository's stand-alone script (`data_utils.py`) augments
with torchvision transforms, which draw from torch's RNG, not NumPy's; if the
blog's runs did the same, the NumPy bug never touched its "augmentation" rows.
`data.augment="legacy"` reproduces the bug as described instead.

This row (standard, no augmentation), published: clean 89.14%, Linf 8/255 0.00%.

Each row needs 3 seeds (`--set data.seed=S`) and a 95% interval before any
difference is called real: evaluate each run (`tfrobust eval RUN --json
RUN/eval.json`), then `tfrobust compare none='runs/suri_linf_none_s*'
legacy='runs/suri_linf_legacy_s*' fixed='runs/suri_linf_fixed_s*'` prints
mean +- std, the 95% intervals and a paired-by-seed test of each difference.

Protocol. `small` (the fixed CPU protocol): ResNet-20, one 10k shard, 15
epochs (standard) or 10 epochs of PGD-3 (robust), cyclic learning rate up to
0.2, SGD momentum 0.9, batch 128; about 8 (standard) or 15-20 (robust)
minutes on 2 idle cores. `full`: all 50k images, 30 epochs, PGD-7 for the
robust rows. Evaluation: the first 1000 test images, PGD-20 (one restart) at
the row's radii; and clean accuracy on all 10k (`tfrobust eval RUN --attacks
none --n 10000`), which the small effects in question need. Results:
docs/RESULTS.md.

Command:
    tfrobust train recipes/suri2021_cifar10_standard_none_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/suri_standard_none_s0
"""

from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def get_config(variant="full"):
    small = variant == "small"
    return Recipe(
        name="suri2021_cifar10_standard_none_resnet20" + ("_small" if small else ""),
        description=__doc__.splitlines()[0],
        data=DataConfig(dataset="cifar10", batch_size=128, augment="none", n_train=10000 if small else None),
        model=ModelConfig(name="resnet20"),
        attack=AttackConfig(name="pgd", norm="linf", eps=8 / 255, steps=3 if small else 7),
        train=TrainConfig(method="standard", epochs=15 if small else 30, optimizer="sgd", learning_rate=0.2,
                          momentum=0.9, weight_decay=5e-3, lr_schedule="cyclic", val_n=500,
                          # A clean model's robust validation reads ~0% and cost a third of each epoch here.
                          val_steps=0),
        eval=EvalConfig(attacks=("pgd",), eps=(8 / 255,), steps=20, restarts=1, n=1000, checks="quick"),
    )
