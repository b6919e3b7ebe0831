"""Prabhu et al.'s fine-tuning of the clean ResNet-32 on a 1:1 clean + stAdv (flow bound 0.3/64 px, 20 steps) set (CIFAR-10).

Prabhu et al., "Understanding adversarial robustness through loss landscape
geometries", arXiv 1907.09061. One stAdv (flow bound 0.3/64 px, 20 steps) example per training image is
generated once from the clean base model (`prabhu2019_cifar10_clean_resnet32.py`),
stored under the run directory (resumable), and the base is fine-tuned on
the clean and adversarial images together (`train.method=static`). We could
not read the paper's tables from here, so no published number is quoted.

`small`: the base's small run (one 10k shard), 5 epochs of fine-tuning at a
tenth of its learning rate. Train the base first, then:

Command:
    tfrobust train recipes/prabhu2019_cifar10_finetune_stadv_resnet32.py --variant small \
        --data-dir ../shared/datasets --set train.init_from=runs/prabhu_clean/model.keras \
        --output runs/prabhu_ft_stadv
"""

import os

from tfrobust.config import load_recipe

# The base model's protocol and evaluation; fine-tuning changes the method and the attack.
BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prabhu2019_cifar10_clean_resnet32.py")
CHANGE = {"attack.name": "stadv", "attack.eps": 0.3 / 64, "attack.steps": 20}


def get_config(variant="full"):
    name = "prabhu2019_cifar10_finetune_stadv_resnet32" + ("_small" if variant == "small" else "")
    base = load_recipe(BASE, variant)
    return base.override(dict(
        CHANGE, name=name, description=__doc__.splitlines()[0],
        **{"train.method": "static", "train.init_from": "runs/prabhu_clean/model.keras",
           "train.epochs": 5 if variant == "small" else 20,
           "train.learning_rate": base.train.learning_rate / 10},
    ))
