"""Training: AdversarialModel and its schedules and callbacks."""

from tfrobust.training import ema  # registers the EMA warm-up optimizers, which checkpoints name
from tfrobust.training.adversarial_model import METHODS, AdversarialModel

__all__ = ["AdversarialModel", "METHODS"]
