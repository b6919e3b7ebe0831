"""Attacks by name: one table that recipes, the command line, training and the docs read.

Each registered name is a `Spec`: the class that runs it, the parameters the
name fixes (PGD on the margin loss is `pgd_margin`), the defaults it sets,
the family of options it takes, and whether training or evaluation may use it.
Adding an attack is one file in `tfrobust/attacks/` and one line in `TABLE`.
"""

import dataclasses
from typing import Callable, Mapping

from tfrobust.attacks.apgd import APGD
from tfrobust.attacks.autoattack import AutoAttack
from tfrobust.attacks.fab import FAB
from tfrobust.attacks.pgd import FGSM, NFGSM, PGD
from tfrobust.attacks.square import Square
from tfrobust.attacks.stadv import StAdv

FAMILIES = ("fgsm", "pgd", "apgd", "fab", "square", "stadv", "autoattack")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One attack name.

    Attributes:
        name: the registered spelling (hyphens and underscores are interchangeable on input).
        factory: the attack class, or the function that builds one (`FGSM`, `NFGSM`).
        cls: the class whose `from_config` rebuilds the attack's recorded config.
        family: the options it takes: fgsm, pgd, apgd, fab, square, stadv or autoattack.
        fixed: parameters the name fixes; a caller may not change them.
        defaults: parameters the name sets unless the caller does.
        train: `AdversarialModel` may run it in `train_step`.
        evaluate: an evaluation may report it.
        summary: what it is, for help texts and docs.
    """

    name: str
    factory: Callable
    cls: type
    family: str
    fixed: Mapping = dataclasses.field(default_factory=dict)
    defaults: Mapping = dataclasses.field(default_factory=dict)
    train: bool = False
    evaluate: bool = True
    summary: str = ""


TABLE = (
    Spec("fgsm", FGSM, PGD, "fgsm", {"random_start": False}, train=True, summary="FGSM (Goodfellow et al. 2015)"),
    Spec("fgsm_rs", FGSM, PGD, "fgsm", {"random_start": True}, train=True, evaluate=False,
         summary="FGSM from a uniform random start (Wong et al. 2020)"),
    Spec("nfgsm", NFGSM, PGD, "fgsm", train=True, evaluate=False,
         summary="N-FGSM: noise 2 eps, no projection (de Jorge et al. 2022)"),
    Spec("pgd", PGD, PGD, "pgd", {"name": "pgd"}, train=True, summary="PGD on cross-entropy (Madry et al. 2018)"),
    Spec("pgd_margin", PGD, PGD, "pgd", {"name": "pgd_margin", "loss": "margin"}, train=True,
         summary="PGD on the CW margin loss"),
    Spec("pgd-targeted", PGD, PGD, "pgd", {"name": "pgd-targeted", "random_target": True},
         summary="PGD towards a random other class per example (Kannan et al. 2018)"),
    Spec("multitargeted", PGD, PGD, "pgd", {"name": "multitargeted", "loss": "margin"}, {"target_classes": 9},
         summary="PGD on z_t - z_y towards each of the 9 likeliest wrong classes (Gowal et al. 2019)"),
    Spec("apgd-ce", APGD, APGD, "apgd", {"name": "apgd-ce", "loss": "ce"}, summary="Auto-PGD, cross-entropy"),
    Spec("apgd-dlr", APGD, APGD, "apgd", {"name": "apgd-dlr", "loss": "dlr"}, summary="Auto-PGD, DLR loss"),
    Spec("apgd-t", APGD, APGD, "apgd", {"name": "apgd-t", "loss": "dlr_targeted"},
         summary="Auto-PGD, targeted DLR over 9 targets (Croce & Hein 2020)"),
    Spec("fab", FAB, FAB, "fab", {"name": "fab"}, summary="minimum-norm FAB (Croce & Hein 2019)"),
    Spec("fab-t", FAB, FAB, "fab", {"name": "fab-t"}, {"target_classes": 9},
         summary="FAB towards the 9 likeliest wrong classes"),
    Spec("square", Square, Square, "square", summary="Square attack, score-based black-box (Andriushchenko et al. 2020)"),
    Spec("stadv", StAdv, StAdv, "stadv", train=True, summary="spatially transformed examples (Xiao et al. 2018)"),
    Spec("autoattack", AutoAttack, AutoAttack, "autoattack", {"name": "autoattack", "version": "standard"},
         summary="AutoAttack, standard: APGD-CE, APGD-T, FAB-T, Square (Croce & Hein 2020)"),
    Spec("autoattack-plus", AutoAttack, AutoAttack, "autoattack", {"name": "autoattack-plus", "version": "plus"},
         summary="AutoAttack, plus version"),
    Spec("autoattack-rand", AutoAttack, AutoAttack, "autoattack", {"name": "autoattack-rand", "version": "rand"},
         summary="AutoAttack, rand version (EOT) for randomised models"),
)
_SPECS = {s.name: s for s in TABLE}


def _key(name):
    return str(name).replace("-", "_").lower()


def spec(name):
    """The `Spec` of an attack name (`apgd_ce`, `APGD-CE` and `apgd-ce` are one attack).

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    for s in TABLE:
        if _key(name) == _key(s.name):
            return s
    raise ValueError(f"Unknown attack; expected one of {names()}. Received: name={name!r}")


def canonical(name):
    """The registered spelling of an attack name."""
    return spec(name).name


def family(name):
    """The options an attack name takes: fgsm, pgd, apgd, fab, square, stadv or autoattack."""
    return spec(name).family


def names(train=None, evaluate=None):
    """The registered attack names, optionally only those training (`train=True`) or evaluation may use."""
    return tuple(s.name for s in TABLE if (train is None or s.train == train)
                 and (evaluate is None or s.evaluate == evaluate))


def build(name, eps, norm="linf", **params):
    """Builds an attack from its name and parameters.

    Args:
        name: a registered name (`names()`; `TABLE` says what each is).
            Hyphens and underscores are interchangeable.
        eps: float > 0 (for stadv, its flow bound; None for its default).
        norm: "linf" or "l2" (not used by stadv).
        **params: the attack's own parameters (steps, step_size, restarts, ...).

    Returns:
        A callable attack.

    Raises:
        ValueError: an unknown name, or a parameter that the name fixes.
    """
    s = spec(name)
    clash = sorted(set(params) & set(s.fixed) - {"name"})
    if clash:
        raise ValueError(f"{s.name} fixes {', '.join(clash)}; use the attack name that has the value you want.")
    kwargs = {**s.defaults, **params, **s.fixed}
    if s.family == "stadv":
        return s.factory(**({} if eps is None else {"eps": eps}), **kwargs)
    return s.factory(eps=eps, norm=norm, **kwargs)


def from_config(config):
    """Rebuilds an attack from `attack.get_config()` (as recorded in reports).

    The config's `name` says its class; a config with a name that is not
    registered (an attack built with its own name) is read by its keys.
    """
    config = dict(config)
    if _key(config.get("name")) in {_key(n) for n in _SPECS}:
        return spec(config["name"]).cls.from_config(config)
    if "version" in config:
        return AutoAttack.from_config(config)
    if "alpha_max" in config:
        return FAB.from_config(config)
    if "target_classes" in config and "step_size" not in config:
        # PGD has target_classes too (MultiTargeted), but APGD has no step size.
        return APGD.from_config(config)
    if "queries" in config:
        return Square.from_config(config)
    if "tau" in config:
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
