import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import PGD, build
from tfrobust.attacks.square import Square, p_schedule


@pytest.mark.parametrize("attack", [Square(0.1, queries=20), Square(0.1, queries=10, loss="ce", restarts=2),
                                    Square(0.1, queries=10, bn="batch_stats")])
def test_attack_contract(attack):
    helpers.run_attack_test(attack, check_loss=False)


def test_p_schedule_follows_the_reference_milestones():
    assert p_schedule(0, 10000, 0.8) == 0.8
    assert p_schedule(11, 10000, 0.8) == 0.4
    assert p_schedule(201, 10000, 0.8) == pytest.approx(0.1)
    assert p_schedule(9999, 10000, 0.8) == pytest.approx(0.8 / 512)
    # Rescaled to the budget: 5000 queries halve at iterations 6, 26, 101, ...
    assert p_schedule(5, 5000, 0.8) == 0.8 and p_schedule(6, 5000, 0.8) == 0.4


def test_result_of_an_element_does_not_depend_on_its_batch():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    attack = Square(0.1, queries=15)
    full = attack(model, x, y, s).numpy()
    part = attack(model, x[3:7], y[3:7], s[3:7]).numpy()
    np.testing.assert_allclose(part, full[3:7], atol=1e-6)
    assert not np.array_equal(attack(model, x, y, s + 1).numpy(), full)


def test_margin_never_rises_and_fooled_points_stay_fooled():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data(n=32)
    margin = lambda v: (tf.reduce_sum(tf.one_hot(y, 3) * model(v), -1)  # noqa: E731
                        - tf.reduce_max(model(v) - 1e9 * tf.one_hot(y, 3), -1)).numpy()
    short = Square(0.2, queries=5)(model, x, y, s)
    long = Square(0.2, queries=30)(model, x, y, s)
    fooled_short = margin(short) <= 0
    assert np.all(margin(long)[fooled_short] <= 0)
    assert np.all(margin(long)[~fooled_short] <= margin(short)[~fooled_short] + 1e-5)


def test_square_breaks_a_model_whose_gradients_are_masked():
    # The input is quantised with tf.round, whose gradient is zero: PGD
    # cannot move, but random search over scores can.
    x, y = helpers.separable_data(n=100, num_classes=2)
    linear = helpers.train_tiny(x, y, num_classes=2)
    inputs = keras.Input((8, 8, 1))
    quantised = keras.layers.Lambda(lambda v: tf.round(v * 4.0) / 4.0)(inputs)
    masked = keras.Model(inputs, linear(quantised))
    acc = lambda xa: float(np.mean(np.argmax(masked(xa), -1) == y))  # noqa: E731
    assert acc(x) > 0.9
    assert acc(PGD(0.5, steps=3)(masked, x, y)) > 0.9
    assert acc(Square(0.5, queries=100)(masked, x, y)) < 0.2


def test_bad_parameters_raise():
    for kwargs in ({"eps": 0.0}, {"eps": 0.1, "queries": 0}, {"eps": 0.1, "p_init": 1.5},
                   {"eps": 0.1, "loss": "dlr"}, {"eps": 0.1, "norm": "l1"}):
        with pytest.raises(ValueError, match="Received"):
            Square(**kwargs)
    with pytest.raises(NotImplementedError, match="L2 Square"):
        Square(0.5, norm="l2")
    assert build("square", 0.3, queries=7).queries == 7
