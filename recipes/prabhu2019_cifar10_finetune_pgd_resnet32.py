"""Prabhu et al.'s fine-tuning of the clean ResNet-32 on a 1:1 clean + PGD-10 at 1/255 set (CIFAR-10).

Prabhu et al., "Understanding adversarial robustness through loss landscape
geometries", arXiv 1907.09061. One PGD-10 at 1/255 example per training image is
generated once from the clean base model (`prabhu2019_cifar10_clean_resnet32.py`),
stored under the run directory (resumable), and the base is fine-tuned on
the clean and adversarial images together (`train.method=static`). We could
not read the paper's tables from here, so no published number is quoted.

`small`: the base's small run (one 10k shard), 5 epochs of fine-tuning at a
tenth of its learning rate. Train the base first, then:

Command:
    tfrobust train recipes/prabhu2019_cifar10_finetune_pgd_resnet32.py --variant small \
        --data-dir ../shared/datasets --set train.init_from=runs/prabhu_clean/model.keras \
        --output runs/prabhu_ft_pgd
"""

from tfrobust.config import derive_recipe

# The FGSM fine-tuning protocol (from the clean base, lr / 10); only the stored attack changes.
CHANGE = {"attack.name": "pgd", "attack.eps": 1 / 255, "attack.steps": 10}


def get_config(variant="full"):
    return derive_recipe(__file__, "prabhu2019_cifar10_finetune_fgsm_resnet32.py", variant, CHANGE, __doc__)
