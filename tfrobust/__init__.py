"""tfrobust: adversarial training and robustness evaluation for Keras 3 / TensorFlow.

Subpackages: `tfrobust.attacks`, `tfrobust.data`, `tfrobust.models`,
`tfrobust.training`, `tfrobust.evaluation`, `tfrobust.export`; robust models by
name in `tfrobust.zoo` (`tfrobust.zoo.load(NAME)`); the `tfrobust` command wraps
`tfrobust.experiment`.
"""

import sys

from tfrobust.version import __version__


def _import_package():
    """Imports the package's modules, and with them TensorFlow.

    Importing `models` and `training` registers every Keras-serialisable class
    of tfrobust (layers, the model, optimizers, schedules), so that
    `keras.saving.load_model` reads a saved model after `import tfrobust`
    alone. tests/test_package.py checks that no module registers one that this
    misses.
    """
    global AdversarialModel, FGSM, PGD, models, training, zoo
    from tfrobust import models, training, zoo  # noqa: F401
    from tfrobust.attacks import FGSM, PGD
    from tfrobust.training import AdversarialModel


def _running_as_main():
    """Whether this import is `python -m tfrobust` locating its __main__ (sys.argv[0] is "-m" until then)."""
    argv = getattr(sys, "orig_argv", [])
    return sys.argv[:1] == ["-m"] and any(
        a == "-m" and b == "tfrobust" or a == "-mtfrobust" for a, b in zip(argv, argv[1:] + [""]))


# `python -m tfrobust` answers --help at once and quiets TensorFlow's import as the `tfrobust` command does:
# tfrobust.cli imports the rest when a command runs.
if not _running_as_main():
    _import_package()

__all__ = ["AdversarialModel", "FGSM", "PGD", "__version__"]
