import numpy as np

from tfrobust.config import Recipe
from tfrobust.evaluation.results import Report, Result
from tfrobust.experiment import evaluation


def _report(checks):
    result = Result(attack="pgd", norm="linf", eps=0.3, robust=np.array([True, False]), params={"steps": 1})
    return Report(clean_correct=np.array([True, True]), results=[result], checks=checks)


def test_export_metadata_says_which_masking_checks_ran():
    # Without it, a report read from metadata.json cannot tell "no warnings" from "not checked".
    recipe = Recipe(name="t")
    for checks in ("full", "quick", "off"):
        metrics = evaluation.export_metadata(recipe, _report(checks))["metrics"]
        assert metrics["checks"] == checks and metrics["warnings"] == []
        assert metrics["robust_accuracy"] == {"pgd": 0.5}
