"""tfrobust: adversarial training and robustness evaluation for Keras 3 / TensorFlow.

Subpackages: `tfrobust.attacks`, `tfrobust.data`, `tfrobust.models`,
`tfrobust.training`, `tfrobust.evaluation`, `tfrobust.export`; robust models by
name in `tfrobust.zoo` (`tfrobust.zoo.load(NAME)`); the `tfrobust` command wraps
`tfrobust.experiment`.
"""

from tfrobust.version import __version__

# Importing `models` and `training` registers every Keras-serialisable class of tfrobust (layers, the
# model, optimizers, schedules), so that `keras.saving.load_model` reads a saved model after `import
# tfrobust` alone. tests/test_package.py checks that no module registers one that this misses.
from tfrobust import models, training, zoo  # noqa: E402, F401
from tfrobust.attacks import FGSM, PGD  # noqa: E402
from tfrobust.training import AdversarialModel  # noqa: E402

__all__ = ["AdversarialModel", "FGSM", "PGD", "__version__"]
