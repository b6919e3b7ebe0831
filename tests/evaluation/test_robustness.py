import json

import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust.attacks import FGSM, PGD
from tfrobust.evaluation import WORST_CASE, evaluate, wilson_interval


def test_wilson_interval_known_values():
    # Reference values from the closed form (Wilson 1927), z = 1.96.
    lo, hi = wilson_interval(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-4) and hi == pytest.approx(0.9448, abs=1e-4)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0713, abs=1e-4)
    with pytest.raises(ValueError, match="n=0"):
        wilson_interval(0, 0)


def test_report_is_per_example_and_worst_case_is_the_intersection():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, _ = helpers.toy_data(n=40)
    attacks = [FGSM(0.05), PGD(0.05, steps=2), PGD(0.05, steps=2, loss="margin", name="pgd_margin")]
    report = evaluate(model, x, y, attacks, batch_size=16, verbose=0)
    clean = np.argmax(model(x), -1) == y
    np.testing.assert_array_equal(report.clean_correct, clean)
    by_name = {r.attack: r for r in report.results}
    for name in ("fgsm", "pgd", "pgd_margin"):
        assert np.all(by_name[name].robust <= clean)
    expected = by_name["fgsm"].robust & by_name["pgd"].robust & by_name["pgd_margin"].robust
    np.testing.assert_array_equal(by_name[WORST_CASE].robust, expected)
    assert report.accuracy(WORST_CASE) <= min(report.accuracy(n) for n in ("fgsm", "pgd", "pgd_margin"))


def test_results_do_not_depend_on_batch_size():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, _ = helpers.toy_data(n=30)
    attacks = [PGD(0.1, steps=2)]
    a = evaluate(model, x, y, attacks, batch_size=7, verbose=0)
    b = evaluate(model, x, y, attacks, batch_size=30, verbose=0)
    np.testing.assert_array_equal(a.results[0].robust, b.results[0].robust)


def test_json_and_table_follow_the_contract():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, _ = helpers.toy_data(n=20)
    report = evaluate(model, x, y, [PGD(8 / 255, steps=1), PGD(16 / 255, steps=1)], verbose=0)
    d = json.loads(json.dumps(report.to_json()))
    assert d["n"] == 20 and 0 <= d["clean_accuracy"] <= 1
    assert sorted({r["eps"] for r in d["results"]}) == pytest.approx([8 / 255, 16 / 255])
    for r in d["results"]:
        assert set(r) >= {"attack", "norm", "eps", "accuracy", "params", "ci95"}
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    table = report.table()
    assert "eps=8/255" in table and "eps=16/255" in table and "clean" in table


def test_labels_out_of_range_raise():
    model = helpers.tiny_classifier()
    x, y, _ = helpers.toy_data(n=4)
    with pytest.raises(ValueError, match="max=7"):
        evaluate(model, x, np.array([0, 1, 2, 7]), [FGSM(0.1)], verbose=0)
