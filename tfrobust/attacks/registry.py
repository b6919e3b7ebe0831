"""Attacks by name, as recipes and the command line give them."""

from tfrobust.attacks.apgd import APGD
from tfrobust.attacks.pgd import FGSM, NFGSM, PGD

_NAMES = (
    "fgsm", "fgsm_rs", "nfgsm", "pgd", "pgd_margin", "pgd-targeted", "multitargeted", "apgd-ce", "apgd-dlr", "apgd-t",
    "fab", "fab-t", "square", "stadv", "autoattack", "autoattack-plus", "autoattack-rand",
)
_FAMILY = {
    "fgsm": "fgsm", "fgsm_rs": "fgsm", "nfgsm": "fgsm", "pgd": "pgd", "pgd_margin": "pgd", "pgd-targeted": "pgd", "multitargeted": "pgd",
    "apgd-ce": "apgd", "apgd-dlr": "apgd", "apgd-t": "apgd",
    "fab": "fab", "fab-t": "fab", "square": "square", "stadv": "stadv",
    "autoattack": "autoattack", "autoattack-plus": "autoattack", "autoattack-rand": "autoattack",
}


def canonical(name):
    """The registered spelling of an attack name: `apgd_ce` and `apgd-ce` are one attack."""
    for known in _NAMES:
        if name.replace("-", "_") == known.replace("-", "_"):
            return known
    raise ValueError(f"Unknown attack; expected one of {_NAMES}. Received: name={name!r}")


def family(name):
    """The attack class behind a name: fgsm, pgd, apgd, fab, square, stadv or autoattack."""
    return _FAMILY[canonical(name)]


def names():
    """The attack names that `build` accepts."""
    return _NAMES


def build(name, eps, norm="linf", **params):
    """Builds an attack from its name and parameters.

    Args:
        name: "fgsm", "fgsm_rs", "nfgsm" (training), "pgd" (cross-entropy), "pgd_margin" (CW
            loss), "pgd-targeted" (towards a random other class per example,
            as Xie & Yuille evaluate), "multitargeted" (Gowal et al. 2019:
            `restarts` PGD runs on `z_t - z_y` towards each of the 9 likeliest
            wrong classes), "apgd-ce", "apgd-dlr", "apgd-t", "fab" (untargeted
            FAB), "fab-t" (FAB-T, 9 target classes by default), "square",
            "stadv" (eps is its flow bound), "autoattack" (AutoAttack's
            "standard" version), "autoattack-plus" or "autoattack-rand".
            Hyphens and underscores are interchangeable.
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
    if name == "nfgsm":
        return NFGSM(eps, norm=norm, **params)
    if name == "pgd":
        return PGD(eps=eps, norm=norm, name="pgd", **params)
    if name == "pgd-targeted":
        return PGD(eps=eps, norm=norm, random_target=True, name="pgd-targeted", **params)
    if name == "multitargeted":
        params.setdefault("target_classes", 9)
        return PGD(eps=eps, norm=norm, loss="margin", name="multitargeted", **params)
    if name == "pgd_margin":
        return PGD(eps=eps, norm=norm, loss="margin", name="pgd_margin", **params)
    if name in ("apgd-ce", "apgd-dlr", "apgd-t"):
        loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr_targeted"}[name]
        return APGD(eps=eps, norm=norm, loss=loss, name=name, **params)
    if name in ("fab", "fab-t"):
        from tfrobust.attacks.fab import FAB

        if name == "fab-t":
            params.setdefault("target_classes", 9)
        return FAB(eps=eps, norm=norm, name=name, **params)
    if name == "square":
        from tfrobust.attacks.square import Square

        return Square(eps=eps, norm=norm, **params)
    if name == "stadv":
        from tfrobust.attacks.stadv import StAdv

        return StAdv(**({} if eps is None else {"eps": eps}), **params)
    from tfrobust.attacks.autoattack import AutoAttack

    version = {"autoattack": "standard", "autoattack-plus": "plus", "autoattack-rand": "rand"}[name]
    return AutoAttack(eps=eps, norm=norm, version=version, name=name, **params)


def from_config(config):
    """Rebuilds an attack from `attack.get_config()` (as recorded in reports)."""
    config = dict(config)
    if "version" in config:
        from tfrobust.attacks.autoattack import AutoAttack

        return AutoAttack.from_config(config)
    if "alpha_max" in config:
        from tfrobust.attacks.fab import FAB

        return FAB.from_config(config)
    if "target_classes" in config and "step_size" not in config:
        # PGD has target_classes too (MultiTargeted), but APGD has no step size.
        return APGD.from_config(config)
    if "queries" in config:
        from tfrobust.attacks.square import Square

        return Square.from_config(config)
    if "tau" in config:
        from tfrobust.attacks.stadv import StAdv

        return StAdv.from_config(config)
    return PGD.from_config(config)


def upgrade_config(config):
    """An attack config as the current code would write it: parameters added since get their defaults.

    Lets resumable state written before a new attack parameter existed match
    the same attack now. A config that does not rebuild is returned unchanged.
    """
    try:
        return from_config(config).get_config()
    except (TypeError, ValueError, KeyError):
        return config
