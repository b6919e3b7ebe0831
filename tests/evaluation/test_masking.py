"""Gradient-masking checks: each symptom is planted in a tiny model and must fire, alone if it can."""

import json
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import PGD, build
from tfrobust.evaluation import Report, Result, evaluate
from tfrobust.evaluation import masking

# On the stripes data an honest linear model is broken by PGD at Linf 0.3
# (the stripe adds 0.5, so moving both halves by 0.25 flips it), which leaves
# room for an attack that has not converged to show it.
EPS = 0.3


@pytest.fixture(scope="module")
def data():
    x, y = helpers.separable_data(n=200)
    # A black pixel in every image, as most real data sets have: the planted
    # sqrt(x^2) below has its NaN gradient there.
    x[:, 0, 0, 0] = 0.0
    return x, y


@pytest.fixture(scope="module")
def honest(data):
    return helpers.train_tiny(*data)


class Planted(keras.Model):
    """An honest classifier with a masking transform before and/or after it."""

    def __init__(self, base, before=None, after=None):
        super().__init__()
        self.base, self.before, self.after = base, before, after

    def call(self, x, training=False):
        h = self.before(x) if self.before else x
        z = self.base(h, training=training)
        return self.after(z, x) if self.after else z


def _softmax(z, x):
    return tf.nn.softmax(z)


def _noise_at_inference(x):
    # GaussianNoise that ignores `training`: every pass draws new noise.
    return x + 0.05 * tf.random.normal(tf.shape(x))


def _quantise(x):
    return tf.round(x * 255.0) / 255.0  # tf.round has no gradient


def _abs_via_sqrt(x):
    return tf.sqrt(tf.square(x))  # |x|; the gradient at x = 0 is 0 * inf = NaN


def _reversed_gradient(z, x):
    # Forward z, gradient -dz/dx: an "incorrect gradient" defence that sends
    # every attack the wrong way, without a zero or NaN in sight.
    return z - 2.0 * (z - tf.stop_gradient(z))


def _noisy_gradient(base):
    """Forward unchanged; a pseudo-random term as large as the true gradient is added to it.

    The term's period (2 pi / 1e4) is far below a PGD step, so each step sees
    fresh noise: the sign of a pixel's gradient is right only somewhat more
    often than not. PGD then drifts like a biased random walk, and more
    steps and restarts keep breaking points that 2 steps left: an attack that
    has not converged. Each pixel still has an informative, finite gradient,
    and at a radius that reaches every image the drift suffices.
    """
    kernel = base.layers[-1].kernel.numpy()
    scale = float(np.mean(np.abs(kernel[:, 1] - kernel[:, 0])))
    omega = 1e4
    phase = tf.constant(np.random.RandomState(0).uniform(0, 2 * np.pi, (2, 64)).astype("float32"))

    def after(z, x):
        decoy = (scale / omega) * tf.reduce_sum(tf.sin(omega * tf.reshape(x, [-1, 1, 64]) + phase), -1)
        return z + decoy - tf.stop_gradient(decoy)

    return after


PLANTED = {
    # name: (builder from the honest model, the checks that must fire)
    "honest": (lambda m: m, set()),
    "softmax_output": (lambda m: Planted(m, after=_softmax), {"probabilities"}),
    "noise_at_inference": (lambda m: Planted(m, before=_noise_at_inference), {"randomness"}),
    "round": (lambda m: Planted(m, before=_quantise), {"gradients", "large_eps"}),
    "stop_gradient": (lambda m: Planted(m, before=tf.stop_gradient), {"gradients", "large_eps"}),
    "nan_gradient": (lambda m: Planted(m, before=_abs_via_sqrt), {"gradients", "large_eps"}),
    "reversed_gradient": (lambda m: Planted(m, after=_reversed_gradient), {"large_eps"}),
    "noisy_gradient": (lambda m: Planted(m, after=_noisy_gradient(m)), {"more_steps"}),
}


def _fired_names(messages):
    return {re.match(r"Possible gradient masking \((\w+)\)", m).group(1) for m in messages}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_each_planted_symptom_fires_its_check(name, data, honest):
    build, expected = PLANTED[name]
    x, y = data
    model = build(honest)
    assert np.mean(np.argmax(model(x), -1) == y) > 0.95  # every planted model still classifies
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages = masking.check_model(model, x, y, eps=EPS, quick=True)
    assert _fired_names(messages) == expected
    raised = [w for w in caught if issubclass(w.category, masking.GradientMaskingWarning)]
    assert [str(w.message) for w in raised] == messages


def test_findings_carry_the_numbers(data, honest):
    x, y = data
    found = {f.name: f for f in masking.model_findings(Planted(honest, before=_quantise), x, y, eps=EPS,
                                                       quick=True)}
    assert list(found) == list(masking.CHECKS)
    g = found["gradients"]
    assert g.fired and g.value == 1.0 and g.threshold == masking.GRADIENT_SHARE
    assert g.details["zero"] == g.details["correct"] and "BPDA" in g.message
    assert found["large_eps"].details["eps"] == 1.0 and "100%" in found["large_eps"].message
    json.dumps([f.to_json() for f in found.values()], allow_nan=False)


def test_nan_gradients_are_named_as_such(data, honest):
    x, y = data
    (g,) = masking.model_findings(Planted(honest, before=_abs_via_sqrt), x, y, quick=True, checks=("gradients",))
    assert g.details["nonfinite"] == g.details["correct"] and "NaN" in g.message


def test_saturated_cross_entropy_points_to_the_margin_loss(data, honest):
    # Logits x 1000: the cross-entropy gradient underflows to exactly 0 in
    # float32 at confident points, while the margin loss keeps one.
    x, y = data
    (g,) = masking.model_findings(Planted(honest, after=lambda z, _: 1000.0 * z), x, y, quick=True,
                                  checks=("gradients",))
    assert g.fired and g.details["zero_but_margin_usable"] > 0 and "margin" in g.message


def test_default_settings_stay_quiet_on_an_honest_model_and_catch_the_unconverged_one(data, honest):
    x, y = data
    checks = ("large_eps", "more_steps")
    assert masking.check_model(honest, x, y, eps=EPS, checks=checks) == []
    (more,) = masking.model_findings(PLANTED["noisy_gradient"][0](honest), x, y, eps=EPS, checks=("more_steps",),
                                     weak_attack=PGD(EPS, steps=2))
    assert more.fired and more.details["strong"]["steps"] == 50 and more.details["strong"]["restarts"] == 3
    # The continued attack visits every iterate of the weak one, so it
    # breaks every point the weak one broke.
    assert more.details["broken_only_by_weak"] == 0


def test_l2_threat_model(data, honest):
    x, y = data
    assert masking.default_large_eps("l2", (8, 8, 1)) == pytest.approx(8.0)
    assert masking.check_model(honest, x, y, eps=1.0, norm="l2", quick=True) == []
    found = masking.model_findings(Planted(honest, before=tf.stop_gradient), x, y, eps=1.0, norm="l2", quick=True)
    assert {f.name for f in found if f.fired} == {"gradients", "large_eps"}


def test_the_evaluations_pgd_is_the_weak_attack(data, honest):
    x, y = data
    weak = PGD(EPS, steps=3, restarts=2, loss="margin")
    (more,) = masking.model_findings(honest, x, y, eps=EPS, weak_attack=weak, quick=True, checks=("more_steps",))
    assert more.details["weak"] == weak.get_config()
    # The weak attack continued: same loss, start and step size, more steps and restarts.
    strong = more.details["strong"]
    assert strong["loss"] == "margin" and strong["step_size"] == weak.step_size
    assert strong["steps"] == 6 and strong["restarts"] == 8


def test_the_weak_attack_is_the_first_plain_pgd_not_multitargeted():
    # MultiTargeted costs 9 PGD runs; "more steps and restarts" of it would be the checks' slowest part.
    mt, pgd = build("multitargeted", EPS, steps=3), PGD(EPS, steps=3)
    assert masking._threat_models([mt, pgd])[("linf", round(EPS, 12))] is pgd


def test_batchnorm_model_uint8_images_and_a_batch_stats_attack():
    model = helpers.tiny_classifier()  # untrained, with a counting BatchNorm
    x, y, _ = helpers.toy_data(n=32)
    model(x[:1])
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    found = masking.model_findings(model, (x * 255).astype("uint8"), y, eps=0.1, quick=True,
                                   weak_attack=PGD(0.1, steps=2, bn="batch_stats"))
    assert [f.name for f in found] == list(masking.CHECKS)
    assert found[-1].details["strong"]["bn"] == "batch_stats"
    # The checks never update the moving statistics.
    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"checks": ("gradient",)}, ValueError, "checks must be"),
        ({"eps": None}, ValueError, "eps=None"),
        ({"n": 0}, ValueError, "n=0"),
        ({"strong_steps": 0}, ValueError, "strong_steps=0"),
        ({"norm": "l1"}, ValueError, "norm"),
        ({"weak_attack": PGD(0.1)}, ValueError, "eps=0.1"),
        ({"weak_attack": PGD(EPS, targeted=True)}, ValueError, "targeted=True"),
        ({"weak_attack": "pgd"}, TypeError, "weak_attack=str"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match, data, honest):
    x, y = data
    kwargs = {"eps": EPS, **kwargs}
    with pytest.raises(error, match=match):
        masking.model_findings(honest, x[:8], y[:8], quick=True, **kwargs)


def _report(n=100, **robust_until):
    """A Report whose attack `name` leaves the first `k` points robust, for each `name=k`."""
    results = []
    for name, k in robust_until.items():
        params = {"of": ["pgd", "square"]} if name == "worst_case" else {}
        if name == "autoattack":
            params = {"components": []}
        results.append(Result(name, "linf", 8 / 255, np.arange(n) < k, params))
    return Report(clean_correct=np.arange(n) < 80, results=results)


def test_black_box_beating_white_box_fires():
    # Square fools 10 points PGD left; autoattack and worst_case are not
    # white-box attacks of their own and must not hide them.
    report = _report(pgd=60, square=50, autoattack=40, worst_case=40)
    with pytest.warns(masking.GradientMaskingWarning, match="fools 10 points"):
        messages = masking.check_report(report)
    assert _fired_names(messages) == {"black_box"}
    (f,) = masking.report_findings(report)
    assert f.value == pytest.approx(0.10) and f.details["white_box"] == ["pgd"]


def test_black_box_weaker_than_white_box_is_quiet():
    report = _report(pgd=60, pgd_margin=55, square=70, worst_case=55)
    with warnings.catch_warnings():
        warnings.simplefilter("error", masking.GradientMaskingWarning)
        assert masking.check_report(report) == []
    (f,) = masking.report_findings(report)
    assert f.value == 0.0 and not f.fired


def test_black_box_is_compared_within_its_threat_model_only():
    report = _report(pgd=60)
    report.results.append(Result("square", "linf", 16 / 255, np.zeros(100, bool), {}))
    assert masking.report_findings(report) == []


def test_black_box_step_of_an_autoattack_cascade_fires():
    report = _report(pgd=60)
    report.results.append(Result("autoattack", "linf", 8 / 255, np.arange(100) < 50, {"components": []},
                                 {"after": {"apgd-ce": 0.6, "apgd-t": 0.55, "square": 0.5}}))
    (f,) = masking.report_findings(report)
    assert f.fired and f.details["fooled"] == 5 and f.details["white_box"] == ["apgd-ce", "apgd-t"]


def test_run_checks_is_quiet_on_an_honest_evaluation_and_not_on_a_masked_one(data, honest):
    x, y = data
    attacks = [PGD(EPS, steps=2), PGD(0.1, steps=2)]
    report = _report(pgd=60, square=70)
    with warnings.catch_warnings():
        warnings.simplefilter("error", masking.GradientMaskingWarning)
        assert masking.run_checks(honest, x, y, attacks, report, quick=True) == []
    found = masking.collect_findings(honest, x, y, attacks, report, quick=True)
    # Eps-free checks once, large_eps once for the one norm, more_steps per
    # eps, then the report's black-box check.
    assert [f.name for f in found] == ["probabilities", "randomness", "gradients", "large_eps", "more_steps",
                                       "more_steps", "black_box"]
    with pytest.warns(masking.GradientMaskingWarning):
        messages = masking.run_checks(PLANTED["noisy_gradient"][0](honest), x, y, attacks, quick=True)
    assert _fired_names(messages) == {"more_steps"}


def test_evaluate_runs_the_checks_by_default(data, honest):
    pytest.importorskip("tfrobust.evaluation.ssim")  # evaluate needs it
    x, y = data
    softmax = keras.Sequential([keras.Input(x.shape[1:]), *honest.layers, keras.layers.Softmax()])
    report = evaluate(softmax, x[:40], y[:40], [PGD(0.1, steps=2)], verbose=0)
    assert _fired_names(report.to_json()["warnings"]) == {"probabilities"}
    # The report says which checks ran, so that an empty warnings list can be told from no checks at all.
    assert report.to_json()["checks"] == "full"
    assert evaluate(softmax, x[:8], y[:8], [PGD(0.1, steps=1)], verbose=0, checks=False).to_json()["checks"] == "off"


def test_a_check_that_fails_is_reported_not_raised(data, honest, monkeypatch):
    x, y = data

    def broken(model, sample):
        raise RuntimeError("boom")

    monkeypatch.setattr(masking, "_gradients", broken)
    with pytest.warns(masking.GradientMaskingWarning, match="could not run.*boom"):
        messages = masking.run_checks(honest, x, y, [], quick=True)
    assert len(messages) == 1 and "unverified" in messages[0]
