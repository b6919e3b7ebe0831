"""Training: AdversarialModel and its schedules and callbacks."""

from tfrobust.training import optimizers  # registers the optimizers that checkpoints name
from tfrobust.training.adversarial_model import METHODS, AdversarialModel

__all__ = ["AdversarialModel", "METHODS"]
