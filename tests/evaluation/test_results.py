import numpy as np

from tfrobust.attacks.autoattack import AutoAttack
from tfrobust.evaluation.results import Report, Result


def _table(attack):
    robust = np.array([True, False, True, True])
    return Report(robust, [Result("autoattack", attack.norm, attack.eps, robust, attack.get_config())]).table()


def test_the_table_says_when_autoattack_ran_below_its_standard_budget():
    assert "reduced budget" not in _table(AutoAttack(eps=8 / 255))
    reduced = _table(AutoAttack(eps=8 / 255, steps=50, queries=500)).splitlines()
    assert reduced[-1] == ("autoattack: a reduced budget, 50 iterations, 500 queries (standard: 100 iterations, "
                           "5000 queries); its accuracy may be above standard AutoAttack's.")
    assert "3 targets (standard: 9 targets)" in _table(AutoAttack(eps=8 / 255, target_classes=3))
    # "rand" runs no Square and no targeted attack: only its iterations are a budget.
    assert "reduced budget" not in _table(AutoAttack(eps=8 / 255, version="rand", queries=10))
    assert "20 iterations (standard: 100 iterations)" in _table(AutoAttack(eps=8 / 255, version="rand", steps=20))
