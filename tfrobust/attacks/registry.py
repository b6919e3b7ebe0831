"""Attacks by name, as recipes and the command line give them."""

from tfrobust.attacks.pgd import FGSM, PGD

_NAMES = ("fgsm", "fgsm_rs", "pgd", "pgd_margin")


def names():
    """The attack names that `build` accepts."""
    return _NAMES


def build(name, eps, norm="linf", **params):
    """Builds an attack from its name and parameters.

    Args:
        name: "fgsm", "fgsm_rs", "pgd" (cross-entropy) or "pgd_margin" (CW loss).
        eps: float > 0.
        norm: "linf" or "l2".
        **params: the attack's own parameters (steps, step_size, restarts, ...).

    Returns:
        A callable attack.
    """
    if name == "fgsm":
        return FGSM(eps, norm=norm, random_start=False, **params)
    if name == "fgsm_rs":
        return FGSM(eps, norm=norm, random_start=True, **params)
    if name == "pgd":
        return PGD(eps=eps, norm=norm, name="pgd", **params)
    if name == "pgd_margin":
        return PGD(eps=eps, norm=norm, loss="margin", name="pgd_margin", **params)
    raise ValueError(f"Unknown attack; expected one of {_NAMES}. Received: name={name!r}")


def from_config(config):
    """Rebuilds an attack from `attack.get_config()`."""
    return PGD.from_config(dict(config))
