"""Adversarial attacks: pure functions of (model, x, y, seeds)."""

from tfrobust.attacks import base, losses, projections
from tfrobust.attacks.apgd import APGD
from tfrobust.attacks.base import position_seeds
from tfrobust.attacks.pgd import FGSM, NFGSM, PGD
from tfrobust.attacks.registry import build, from_config, names

__all__ = ["APGD", "FGSM", "NFGSM", "PGD", "base", "build", "from_config", "losses", "names", "position_seeds", "projections"]
