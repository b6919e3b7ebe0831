"""Gowal et al.'s low-quality generator: 70% of each batch from a class-conditional Gaussian, on CIFAR-10 ResNet-20.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468.
The Gaussian row of the fixed CPU protocol: the baseline recipe
(`gowal2021_cifar10_linf_trades_none_resnet20.py`: TRADES beta 6, EMA weights,
the same number of steps)
with 30% real and 70% generated images per batch, the generated ones drawn
once from a mean and full covariance per class fitted to the training set
(`data.generated.ClassConditionalGaussian`), labelled with the class they
were drawn from, label smoothing 0.1 on the generated part only. Gowal et
al. report that even such non-realistic samples improve robustness
(abstract); we could not read their number for it.

Command:
    tfrobust train recipes/gowal2021_cifar10_linf_trades_gaussian_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/gowal_gaussian_s0
"""

from tfrobust.config import derive_recipe

# The baseline's protocol; only the generated data changes.
CHANGE = {"data.generated": "gaussian", "data.generated_fraction": 0.7,
          "data.generated_n": 50000, "train.generated_label_smoothing": 0.1}


def get_config(variant="full"):
    return derive_recipe(__file__, "gowal2021_cifar10_linf_trades_none_resnet20.py", variant, CHANGE, __doc__)
