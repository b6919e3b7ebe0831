"""tfrobust: adversarial training and robustness evaluation for Keras 3 / TensorFlow.

Subpackages: `tfrobust.attacks`, `tfrobust.data`, `tfrobust.models`,
`tfrobust.training`, `tfrobust.evaluation`, `tfrobust.export`; the
`tfrobust` command wraps `tfrobust.experiment`.
"""

__version__ = "0.1.0"

from tfrobust.attacks import FGSM, PGD  # noqa: E402
from tfrobust.training import AdversarialModel  # noqa: E402

__all__ = ["AdversarialModel", "FGSM", "PGD", "__version__"]
