"""The attacks' input checks (tfrobust.attacks.base): eager, in a graph, and around XLA."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import APGD, PGD, base
from tfrobust.attacks.stadv import StAdv

ATTACKS = [PGD(0.1, steps=2), APGD(0.1, steps=2), StAdv(steps=2)]


def _data():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data(n=6)
    model(x[:1])
    return model, x, y, s


def _nan(x):
    x = x.copy()
    x[0, 0, 0, 0] = np.nan
    return x


def _inf(x):
    x = x.copy()
    x[1, 2, 2, 0] = np.inf
    return x


# (what is wrong, x, y, seeds) from the toy data -> (error, message)
BAD_INPUTS = [
    ("nan pixels", lambda x, y, s: (_nan(x), y, s), ValueError, "x must be finite pixel values in \\[0, 1\\]"),
    ("inf pixels", lambda x, y, s: (_inf(x), y, s), ValueError, "x must be finite pixel values"),
    ("0-255 floats", lambda x, y, s: (x * 255, y, s), ValueError, "x must lie in \\[0, 1\\]"),
    ("float labels", lambda x, y, s: (x, y.astype("float32"), s), TypeError, "y must hold integer class indices"),
    ("labels too large", lambda x, y, s: (x, y + 3, s), ValueError, "y must be class indices in \\[0, 3\\)"),
    ("negative labels", lambda x, y, s: (x, y - 1, s), ValueError, "y must be class indices in \\[0, 3\\)"),
    ("one-hot labels", lambda x, y, s: (x, np.eye(3, dtype="int64")[y], s), ValueError, "not one-hot"),
    ("labels of rank 3", lambda x, y, s: (x, y[:, None, None], s), ValueError, "y must hold class indices \\[B\\]"),
    ("fewer labels", lambda x, y, s: (x, y[:4], s), ValueError, "y must hold one label per image in x"),
    ("empty batch", lambda x, y, s: (x[:0], y[:0], s[:0]), ValueError, "x is empty"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("case, corrupt, error, match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_an_attack_refuses_bad_images_and_labels_naming_x_or_y(attack, case, corrupt, error, match):
    model, x, y, s = _data()
    with pytest.raises(error, match=match):
        attack(model, *corrupt(x, y, s))


@pytest.mark.parametrize("case, corrupt, error, match", [c for c in BAD_INPUTS if c[2] is ValueError
                                                         and c[0] not in ("empty batch", "one-hot labels",
                                                                          "labels of rank 3")],
                         ids=lambda c: c if isinstance(c, str) else "")
def test_an_attack_in_a_tf_function_refuses_bad_values(case, corrupt, error, match):
    model, x, y, s = _data()
    attack = PGD(0.1, steps=2)
    # A dynamic batch, so that the lengths too are checked when the graph runs.
    spec = (tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2], tf.int32))
    run = tf.function(lambda x, y, s: attack(model, x, y, s), input_signature=spec)
    with pytest.raises(ValueError, match=match), base.input_errors():
        run(*corrupt(x, y, s))


def test_labels_of_shape_n_by_1_are_read_as_a_vector():
    model, x, y, s = _data()
    attack = PGD(0.1, steps=2)
    np.testing.assert_array_equal(attack(model, x, y[:, None], s).numpy(), attack(model, x, y, s).numpy())


def test_the_kl_loss_takes_probabilities_and_refuses_class_indices():
    model, x, y, s = _data()
    attack = PGD(0.1, steps=2, loss="kl", init="gaussian", select="last")
    probs = tf.nn.softmax(model(x))
    assert attack(model, x, probs, s).shape == x.shape
    with pytest.raises(ValueError, match="y must be float probabilities \\[B, K\\]"):
        attack(model, x, y, s)


def _xla(attack, model):
    return tf.function(lambda x, y, s: attack(model, x, y, s), jit_compile=True)


@pytest.mark.parametrize("case, corrupt, error, match",
                         [c for c in BAD_INPUTS if c[0] in ("float labels", "one-hot labels", "fewer labels",
                                                            "empty batch")],
                         ids=lambda c: c if isinstance(c, str) else "")
def test_under_xla_dtype_shape_and_length_are_refused_when_the_attack_is_traced(case, corrupt, error, match):
    model, x, y, s = _data()
    with pytest.raises(error, match=match):
        _xla(PGD(0.1, steps=2), model)(*corrupt(x, y, s))


@pytest.mark.parametrize("case, corrupt", [("nan pixels", lambda x, y, s: (_nan(x), y, s)),
                                           ("labels too large", lambda x, y, s: (x, y + 3, s))])
def test_under_xla_unchecked_values_are_not_silent(case, corrupt):
    # XLA drops asserts: the attack cannot refuse NaN pixels or labels out of range inside the compiled function,
    # so it says so when traced, and check_inputs before the compiled function refuses them.
    model, x, y, s = _data()
    bad = corrupt(x, y, s)
    with pytest.warns(UserWarning, match="XLA drops asserts"):
        _xla(PGD(0.1, steps=2), model)(*bad)
    with pytest.raises(ValueError, match="x must be finite|y must be class indices in \\[0, 3\\)"):
        base.check_inputs(bad[0], bad[1], num_classes=base.output_classes(model))


def test_under_xla_inputs_checked_outside_neither_warn_nor_change_the_result():
    model, x, y, s = _data()
    attack = PGD(0.1, steps=2)
    run = _xla(attack, model)

    def checked(x, y, s):
        with base.inputs_checked():
            return run(x, y, s)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x_adv = checked(x, y, s)
    np.testing.assert_allclose(x_adv.numpy(), attack(model, x, y, s).numpy(), atol=1e-5)


def test_output_classes_reads_the_models_output_shape():
    model, _, _, _ = _data()
    assert base.output_classes(model) == 3
    assert base.output_classes(lambda x: x) is None


def _correct(model, x, y):
    return np.argmax(model(x, training=False), -1) == y


@pytest.mark.parametrize("attack", [
    APGD(0.05, loss="dlr_targeted", target_classes=3, steps=2),
    APGD(0.05, steps=1, restarts=3),
    APGD(0.5, norm="l1", steps=1, restarts=2, large_eps=True),
], ids=["apgd-t", "apgd-restarts", "apgd-l1"])
def test_runs_break_exactly_the_points_the_whole_attack_breaks(attack):
    model = helpers.tiny_classifier(num_classes=5, batch_norm=False)
    x, _, s = helpers.toy_data(n=32, num_classes=5)
    y = np.argmax(model(x, training=False), -1)  # every point starts robust
    runs = base.runs_of(attack, 5)
    assert [(r.target, r.restart) for r in runs] == attack.run_keys(5) and len(runs) > 1
    assert all(r.name == attack.name and r.get_config()["run"] == [r.target, r.restart] for r in runs)
    whole = _correct(model, attack(model, x, y, s), y)
    alone = [_correct(model, r(model, x, y, s), y) for r in runs]
    np.testing.assert_array_equal(whole, np.logical_and.reduce(alone))
    # Not vacuous: the runs break different sets of points, and some points are left.
    assert len({a.tobytes() for a in alone}) > 1
    assert 0 < whole.sum() < len(x)


def test_an_attack_with_one_run_is_its_own_run():
    assert base.runs_of(APGD(0.1, steps=2), 10) == (APGD(0.1, steps=2),)
    assert base.runs_of(PGD(0.1, steps=2), 10) == (PGD(0.1, steps=2),)
    # Targets are capped by the classes: 3 classes leave 2 target ranks.
    assert APGD(0.1, loss="dlr_targeted", target_classes=9).run_keys(3) == [(1, 0), (2, 0)]
