"""Attacks by name, as recipes and the command line give them."""

from tfrobust.attacks.apgd import APGD
from tfrobust.attacks.pgd import FGSM, PGD

_NAMES = ("fgsm", "fgsm_rs", "pgd", "pgd_margin", "apgd-ce", "apgd-dlr", "apgd-t")


def canonical(name):
    """The registered spelling of an attack name: `apgd_ce` and `apgd-ce` are one attack."""
    for known in _NAMES:
        if name.replace("-", "_") == known.replace("-", "_"):
            return known
    raise ValueError(f"Unknown attack; expected one of {_NAMES}. Received: name={name!r}")


def names():
    """The attack names that `build` accepts."""
    return _NAMES


def build(name, eps, norm="linf", **params):
    """Builds an attack from its name and parameters.

    Args:
        name: "fgsm", "fgsm_rs", "pgd" (cross-entropy), "pgd_margin" (CW
            loss), "apgd-ce", "apgd-dlr" or "apgd-t". Hyphens and underscores
            are interchangeable.
        eps: float > 0.
        norm: "linf" or "l2".
        **params: the attack's own parameters (steps, step_size, restarts, ...).

    Returns:
        A callable attack.
    """
    name = canonical(name)
    if name == "fgsm":
        return FGSM(eps, norm=norm, random_start=False, **params)
    if name == "fgsm_rs":
        return FGSM(eps, norm=norm, random_start=True, **params)
    if name == "pgd":
        return PGD(eps=eps, norm=norm, name="pgd", **params)
    if name == "pgd_margin":
        return PGD(eps=eps, norm=norm, loss="margin", name="pgd_margin", **params)
    loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr_targeted"}[name]
    return APGD(eps=eps, norm=norm, loss=loss, name=name, **params)


def from_config(config):
    """Rebuilds an attack from `attack.get_config()`."""
    return PGD.from_config(dict(config))
