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

from tfrobust.config import derive_recipe

# The FGSM-RS recipe's model, data, schedule and evaluation; the attack is N-FGSM (noise 2 eps, step eps, no
# projection). The reference code crafts the attack in train mode (batch statistics); so does this recipe,
# without updating the moving statistics.
CHANGE = {"attack.name": "nfgsm", "attack.step_size": 8 / 255, "attack.bn": "batch_stats", "train.method": "nfgsm"}


def get_config(variant="full"):
    return derive_recipe(__file__, "wong2020_cifar10_linf_fgsm_rs_resnet20.py", variant, CHANGE, __doc__)
