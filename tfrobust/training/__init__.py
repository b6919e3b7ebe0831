"""Training: AdversarialModel and its schedules and callbacks."""

from tfrobust.training import optimizers  # noqa: F401 (registers the optimizers that checkpoints name)
from tfrobust.training import schedules  # noqa: F401 (registers PiecewiseLinear, which a saved optimizer names)
from tfrobust.training.adversarial_model import METHODS, AdversarialModel

__all__ = ["AdversarialModel", "METHODS"]
