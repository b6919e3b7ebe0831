import json
import os

import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust.attacks import APGD, FGSM, PGD
from tfrobust.attacks.autoattack import AutoAttack
from tfrobust.evaluation import WORST_CASE, evaluate, saved_outcomes, wilson_interval
from tfrobust.evaluation.robustness import timed_attacks


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
    report = evaluate(model, x, y, attacks, batch_size=16, verbose=0, checks=False)
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
    a = evaluate(model, x, y, attacks, batch_size=7, verbose=0, checks=False)
    b = evaluate(model, x, y, attacks, batch_size=30, verbose=0, checks=False)
    np.testing.assert_array_equal(a.results[0].robust, b.results[0].robust)


def test_json_and_table_follow_the_contract():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, _ = helpers.toy_data(n=20)
    report = evaluate(model, x, y, [PGD(8 / 255, steps=1), PGD(16 / 255, steps=1)], verbose=0, checks=False)
    d = json.loads(json.dumps(report.to_json()))
    assert d["n"] == 20 and 0 <= d["clean_accuracy"] <= 1
    assert sorted({r["eps"] for r in d["results"]}) == pytest.approx([8 / 255, 16 / 255])
    for r in d["results"]:
        assert set(r) >= {"attack", "norm", "eps", "accuracy", "params", "ci95"}
        if r["attack"] != "worst_case":
            assert 0.0 <= r["ssim_distance"] <= 2.0
            assert r["max_distance"] <= r["eps"] + 1e-6
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    table = report.table()
    assert "eps=8/255" in table and "eps=16/255" in table and "clean" in table


def test_labels_out_of_range_raise():
    model = helpers.tiny_classifier()
    x, y, _ = helpers.toy_data(n=4)
    with pytest.raises(ValueError, match="max=7"):
        evaluate(model, x, np.array([0, 1, 2, 7]), [FGSM(0.1)], verbose=0)


def _model_and_data(n=24, num_classes=4):
    x, y = helpers.separable_data(n=n, num_classes=num_classes)
    return helpers.train_tiny(x, y, num_classes=num_classes, epochs=5), x, y


def test_evaluation_under_a_strategy_matches_one_device():
    model, x, y = _model_and_data(n=21)
    # One device runs eagerly between compiled attacks; a strategy runs one traced step (tf.cond per stage).
    attacks = [PGD(0.1, steps=2), APGD(0.1, steps=2), AutoAttack(0.1, version="rand", steps=1)]
    one = evaluate(model, x, y, attacks, batch_size=8, verbose=0, checks=False)
    two = evaluate(model, x, y, attacks, batch_size=8, verbose=0, checks=False,
                   strategy=helpers.mirrored_strategy())
    np.testing.assert_array_equal(one.clean_correct, two.clean_correct)
    for a, b in zip(one.results, two.results):
        np.testing.assert_array_equal(a.robust, b.robust)
        assert a.extra.get("ssim_distance") == pytest.approx(b.extra.get("ssim_distance"), abs=1e-6)


def test_an_interrupted_evaluation_resumes_without_redoing_batches(tmp_path, monkeypatch):
    model, x, y = _model_and_data(n=20)
    attacks = [PGD(0.1, steps=2)]
    straight = evaluate(model, x, y, attacks, batch_size=6, verbose=0, checks=False)

    calls = []
    real = np.savez

    def savez_then_stop(path, **arrays):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is stopped during its third batch
        real(path, **arrays)
        calls.append(path)

    monkeypatch.setattr(np, "savez", savez_then_stop)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, x, y, attacks, batch_size=6, verbose=0, checks=False, state_dir=str(tmp_path))
    monkeypatch.setattr(np, "savez", real)
    assert sorted(p.name for p in tmp_path.glob("batch_*.npz")) == ["batch_000000.npz", "batch_000001.npz"]

    counted = []
    monkeypatch.setattr(np, "savez", lambda path, **a: (counted.append(path), real(path, **a)))
    resumed = evaluate(model, x, y, attacks, batch_size=6, verbose=0, checks=False, state_dir=str(tmp_path))
    assert len(counted) == 2  # batches 3 and 4 only
    np.testing.assert_array_equal(resumed.clean_correct, straight.clean_correct)
    np.testing.assert_array_equal(resumed.results[0].robust, straight.results[0].robust)


def test_resume_refuses_state_of_another_evaluation(tmp_path):
    model, x, y = _model_and_data(n=8)
    evaluate(model, x, y, [PGD(0.1, steps=1)], verbose=0, checks=False, state_dir=str(tmp_path))
    with pytest.raises(ValueError, match="belongs to another evaluation") as e:
        evaluate(model, x, y, [PGD(0.2, steps=1)], verbose=0, checks=False, state_dir=str(tmp_path))
    # The message names what differs, briefly, instead of printing both descriptions whole.
    assert "attacks:" in str(e.value) and "model:" not in str(e.value) and len(str(e.value)) < 400, str(e.value)


def test_state_written_before_a_new_attack_parameter_still_resumes(tmp_path):
    import json

    model, x, y = _model_and_data(n=8)
    first = evaluate(model, x, y, [PGD(0.1, steps=1)], verbose=0, checks=False, state_dir=str(tmp_path))
    state = tmp_path / "state.json"
    saved = json.loads(state.read_text())
    for config in saved["attacks"]:
        del config["precision"], config["random_target"]
    state.write_text(json.dumps(saved))
    again = evaluate(model, x, y, [PGD(0.1, steps=1)], verbose=0, checks=False, state_dir=str(tmp_path))
    np.testing.assert_array_equal(again.results[0].robust, first.results[0].robust)


def test_cascade_equals_the_worst_case_of_its_attacks_run_alone():
    # Per-element attacks make the cascade (each attack only on the points
    # the earlier ones left) identical to running every attack on all points.
    model, x, y = _model_and_data(n=32)
    ensemble = AutoAttack(0.12, version="rand", steps=2)
    parts = list(ensemble.components)
    report = evaluate(model, x, y, [ensemble] + parts, batch_size=16, verbose=0, checks=False,
                      worst_case=False)
    cascade = report.results[0]
    alone = np.logical_and.reduce([r.robust for r in report.results[1:]])
    np.testing.assert_array_equal(cascade.robust, alone)
    assert list(cascade.extra["after"]) == ["apgd-ce", "apgd-dlr"]
    assert cascade.extra["after"]["apgd-dlr"] == pytest.approx(cascade.accuracy)
    assert cascade.extra["after"]["apgd-ce"] >= cascade.accuracy


def test_ssim_table_and_threat_model_columns():
    model, x, y = _model_and_data(n=12)
    report = evaluate(model, x, y, [PGD(0.1, steps=1), PGD(0.5, norm="l2", steps=1)], verbose=0,
                      checks=False)
    table = report.table()
    assert "linf eps=0.1" in table and "l2 eps=0.5" in table
    assert "worst_case" not in table  # one attack per threat model
    assert "1-SSIM" in report.ssim_table()


def test_standard_ensemble_with_square_equals_its_parts_and_is_at_most_each():
    model, x, y = _model_and_data(n=24)
    ensemble = AutoAttack(0.12, steps=2, target_classes=2, queries=10)
    parts = list(ensemble.components)
    assert [a.name for a in parts] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    report = evaluate(model, x, y, [ensemble] + parts, batch_size=12, verbose=0, checks=False)
    by_name = {r.attack: r for r in report.results}
    alone = np.logical_and.reduce([by_name[a.name].robust for a in parts])
    np.testing.assert_array_equal(by_name["autoattack"].robust, alone)
    for a in parts:
        assert by_name["autoattack"].accuracy <= by_name[a.name].accuracy
    assert AutoAttack(0.5, norm="l2", steps=2).components[-1].name == "square"


def test_an_l1_attack_is_evaluated_with_its_distances_and_the_model_checks():
    # The PGD-based masking checks have no L1 threat model; the model checks still run and nothing fails.
    model, x, y = _model_and_data(n=12)
    report = evaluate(model, x, y, [APGD(2.0, norm="l1", steps=2)], batch_size=6, verbose=0, checks="quick")
    assert report.checks == "quick"
    result = report.result("apgd-ce")
    assert result.norm == "l1" and 0.0 < result.extra["max_distance"] <= 2.0 + 1e-5


def test_saved_outcomes_are_the_evaluations_per_example_results(tmp_path):
    model, x, y = _model_and_data(n=20)
    attacks = [PGD(0.1, steps=2), AutoAttack(0.1, steps=1, target_classes=1, queries=5)]
    state = str(tmp_path / "state")
    report = evaluate(model, x, y, attacks, batch_size=6, seed=3, verbose=0, checks=False, state_dir=state)
    configs, seed, out = saved_outcomes(state, model, x, y)
    assert [c["name"] for c in configs] == ["pgd", "autoattack"] and seed == 3
    np.testing.assert_array_equal(out["clean"], report.clean_correct)
    for i, name in enumerate(("pgd", "autoattack")):
        np.testing.assert_array_equal(out[f"robust_{i}"], report.result(name).robust)
    assert out["after_1"].shape == (20, 4) and out["after_1"].dtype == bool
    # An unfinished evaluation: the finished batches only.
    os.remove(os.path.join(state, "batch_000003.npz"))
    assert len(saved_outcomes(state, model, x, y)[2]["clean"]) == 18
    other = helpers.train_tiny(x, y, num_classes=4, epochs=1)
    with pytest.raises(ValueError, match="belongs to another evaluation.*model"):
        saved_outcomes(state, other, x, y)
    with pytest.raises(ValueError, match="belongs to another evaluation.*labels_crc"):
        saved_outcomes(state, model, x, (y + 1) % 4)
    with pytest.raises(ValueError, match="covers 20 images; 10 were given"):
        saved_outcomes(state, model, x[:10], y[:10])
    with pytest.raises(FileNotFoundError, match="no state.json"):
        saved_outcomes(str(tmp_path / "nothing"), model, x, y)


def _record_calls(monkeypatch, method):
    """The names of the AutoAttack components whose `method` runs (in a traced function: each trace), in order."""
    from tfrobust.attacks.fab import FAB
    from tfrobust.attacks.square import Square

    names = []
    for cls in (APGD, FAB, Square):
        def spy(self, *args, real=getattr(cls, method), **kwargs):
            names.append(self.name)
            return real(self, *args, **kwargs)
        monkeypatch.setattr(cls, method, spy)
    return names


def test_an_autoattack_component_no_point_reaches_is_never_traced(monkeypatch):
    model, x, y = _model_and_data(n=12)
    ensemble = AutoAttack(0.12, steps=1, target_classes=1, queries=5)
    traced = _record_calls(monkeypatch, "__call__")
    predicted = np.argmax(model(x, training=False), -1)
    wrong = (predicted + 1) % 4
    report = evaluate(model, x, wrong, [ensemble], batch_size=6, verbose=0, checks=False)
    assert traced == [] and report.result("autoattack").accuracy == 0.0
    evaluate(model, x, predicted, [ensemble], batch_size=6, verbose=0, checks=False)
    # Each component traced once for the whole evaluation (two batches), in the cascade's order.
    assert traced == ["apgd-ce", "apgd-t", "fab-t", "square"]
    # An undefended model, as it were: at eps = 1 APGD-CE breaks every point, and nothing after it is traced.
    traced.clear()
    report = evaluate(model, x, predicted, [AutoAttack(1.0, steps=2, target_classes=1, queries=5)], batch_size=6,
                      verbose=0, checks=False)
    assert report.result("autoattack").extra["after"]["apgd-ce"] == 0.0 and traced == ["apgd-ce"]


def test_the_runs_of_a_component_share_one_trace_and_match_the_whole_component(monkeypatch):
    model, x, y = _model_and_data(n=12)
    predicted = np.argmax(model(x, training=False), -1)
    # Several runs per component: APGD-T and FAB-T with 3 targets each.
    ensemble = AutoAttack(0.05, steps=1, target_classes=3, queries=5)
    traced = _record_calls(monkeypatch, "call_runs")
    one = evaluate(model, x, predicted, [ensemble], batch_size=6, verbose=0, checks=False)
    # Two batches, three runs each of APGD-T and FAB-T: still one trace per component.
    assert traced == ["apgd-ce", "apgd-t", "fab-t", "square"]
    monkeypatch.undo()
    # A strategy's traced step runs each component whole: the same points survive each stage.
    whole = evaluate(model, x, predicted, [ensemble], batch_size=6, verbose=0, checks=False,
                     strategy=helpers.mirrored_strategy())
    np.testing.assert_array_equal(one.results[0].robust, whole.results[0].robust)
    assert one.results[0].extra["after"] == whole.results[0].extra["after"]
    assert 0.0 < one.results[0].extra["after"]["apgd-ce"] and one.results[0].extra["after"]["apgd-t"] < 1.0


def test_timed_attacks_times_each_component_and_only_inside_the_block():
    model, x, y = _model_and_data(n=12)
    predicted = np.argmax(model(x, training=False), -1)
    ensemble = AutoAttack(0.05, steps=1, target_classes=3, queries=5)
    with timed_attacks() as times:
        report = evaluate(model, x, predicted, [ensemble], batch_size=6, verbose=0, checks=False)
    assert list(times) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    # APGD-CE makes one run per batch, on the correctly classified points (all 12 here).
    assert times["apgd-ce"]["calls"] == 2 and times["apgd-ce"]["points"] == 12
    # APGD-T runs each of its 3 targets on what the earlier ones left: at most 3 calls per batch, fewer points.
    assert 2 <= times["apgd-t"]["calls"] <= 6
    after = report.results[0].extra["after"]
    assert times["apgd-t"]["points"] <= 3 * round(12 * after["apgd-ce"])
    for entry in times.values():
        assert 0 < entry["first_call_seconds"] <= entry["seconds"]
    frozen = json.dumps(times)
    evaluate(model, x, predicted, [ensemble], batch_size=6, verbose=0, checks=False)
    assert json.dumps(times) == frozen


@pytest.mark.parametrize("images, labels, error, match", [
    (np.zeros([0, 8, 8, 1], "float32"), np.zeros([0], "int64"), ValueError, "images is empty"),
    (np.full([4, 8, 8, 1], np.nan, "float32"), np.arange(4) % 3, ValueError, "images must be finite"),
    (np.full([4, 8, 8, 1], 200.0, "float32"), np.arange(4) % 3, ValueError, "images must lie in \\[0, 1\\]"),
    (np.zeros([4, 8, 8, 1], "float32"), np.arange(4) / 2, TypeError, "labels must be integer class indices"),
])
def test_empty_nan_or_unscaled_images_and_float_labels_raise(images, labels, error, match):
    model = helpers.tiny_classifier()
    with pytest.raises(error, match=match):
        evaluate(model, images, labels, [FGSM(0.1)], verbose=0, checks="off")


def test_a_batch_size_below_one_raises():
    model = helpers.tiny_classifier()
    x, y, _ = helpers.toy_data(n=4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1. Received: batch_size=0"):
        evaluate(model, x, y, [FGSM(0.1)], batch_size=0, verbose=0, checks="off")


@pytest.mark.parametrize("filtered", [True, False])
def test_many_radii_do_not_warn_about_retracing(filtered, caplog, monkeypatch):
    # One compiled function per attack is by design; TensorFlow's warning about functions defined in a loop
    # ("triggered tf.function retracing ... define your @tf.function outside of the loop") would only mislead.
    # TensorFlow warns at most twice per process for a function's code, so its counter starts afresh here; and
    # without the filter the warning does appear, so that this test can fail.
    import contextlib

    from tensorflow.python.eager.polymorphic_function import polymorphic_function
    from tfrobust.evaluation import robustness

    monkeypatch.setattr(polymorphic_function, "_frequent_tracing_detector_manager",
                        polymorphic_function._FrequentTracingDetectorManager())
    if not filtered:
        monkeypatch.setattr(robustness, "_expected_retracing", contextlib.nullcontext)
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, _ = helpers.toy_data(n=8)
    attacks = [PGD(k / 255, steps=1) for k in range(1, 8)]
    with caplog.at_level("WARNING"):
        report = evaluate(model, x, y, attacks, verbose=0, checks=False)
    assert len(report.results) == 7  # one per radius (a worst case over one attack is that attack)
    warned = [r for r in caplog.records if "retracing" in r.getMessage()]
    assert (not warned) if filtered else warned


def test_only_evaluations_own_retracing_warning_is_dropped():
    import logging

    from tfrobust.evaluation import robustness

    def record(message):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)

    quiet = robustness._ExpectedRetracing()
    ours = "5 out of the last 5 calls to <function _step_fn.<locals>.call.<locals>.<lambda> at 0x1> triggered tf.function retracing."
    theirs = "5 out of the last 5 calls to <function my_model_call at 0x2> triggered tf.function retracing."
    assert not quiet.filter(record(ours))
    assert quiet.filter(record(theirs)) and quiet.filter(record("another warning"))
