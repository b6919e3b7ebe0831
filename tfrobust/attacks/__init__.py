"""Adversarial attacks: pure functions of (model, x, y, seeds)."""

from tfrobust.attacks import losses, projections
from tfrobust.attacks.pgd import FGSM, PGD, position_seeds
from tfrobust.attacks.registry import build, from_config, names

__all__ = ["FGSM", "PGD", "build", "from_config", "losses", "names", "position_seeds", "projections"]
