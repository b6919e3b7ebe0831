"""Gowal et al.'s L2 baseline without extra data: TRADES at L2 128/255 with EMA weights, on CIFAR-10 ResNet-20.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468:
their L2 threat model is eps = 128/255, where their best CIFAR-10 model
reaches 78.31% robust accuracy (abstract). This is the L2 row of the fixed
CPU protocol of `gowal2021_cifar10_linf_trades_none_resnet20.py` (TRADES beta 6,
3-step KL attack, EMA weights, equal steps): only the threat model changes. The evaluation
PGD uses the default step, 2.5 eps / steps, since the Linf row's 2/255 step
is meaningless at an L2 radius.

Command:
    tfrobust train recipes/gowal2021_cifar10_l2_trades_none_resnet20.py --variant small \
        --data-dir ../shared/datasets --set data.seed=0 --output runs/gowal_l2_none_s0
"""

from tfrobust.config import derive_recipe

# Their released attack code is Linf only, so the full variant's L2 attack keeps normalised-gradient steps of the
# default size rather than the Linf row's Adam steps of 0.1 (an L2 step of about 0.1 x sqrt(3072) = 5.5). It keeps
# the Linf row's uniform start (in the L2 ball) and batch-statistics BatchNorm.
CHANGE = {"attack.norm": "l2", "attack.eps": 128 / 255, "eval.step_size": None, "attack.step_rule": "sign",
          "attack.step_size": None, "attack.step_schedule": ()}


def get_config(variant="full"):
    return derive_recipe(__file__, "gowal2021_cifar10_linf_trades_none_resnet20.py", variant, CHANGE, __doc__)
