import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import APGD, PGD, build
from tfrobust.attacks.square import Square, l1_window, l2_window, p_schedule


@pytest.mark.parametrize("attack", [Square(0.1, queries=20), Square(0.1, queries=10, loss="ce", restarts=2),
                                    Square(0.1, queries=10, bn="batch_stats"), Square(1.0, norm="l2", queries=20),
                                    Square(2.0, norm="l2", queries=10, loss="ce", restarts=2,
                                           rescale_schedule=False),
                                    Square(2.0, norm="l1", queries=20), Square(40.0, norm="l1", queries=10)])
def test_attack_contract(attack):
    helpers.run_attack_test(attack, check_loss=False)


def test_p_schedule_follows_the_reference_milestones():
    assert p_schedule(0, 10000, 0.8) == 0.8
    assert p_schedule(11, 10000, 0.8) == 0.4
    assert p_schedule(201, 10000, 0.8) == pytest.approx(0.1)
    assert p_schedule(9999, 10000, 0.8) == pytest.approx(0.8 / 512)
    # Rescaled to the budget: 5000 queries halve at iterations 6, 26, 101, ...
    assert p_schedule(5, 5000, 0.8) == 0.8 and p_schedule(6, 5000, 0.8) == 0.4
    # AutoAttack's Square does not rescale: with 5000 queries p halves 7 times, at iteration 11 first.
    assert p_schedule(10, 5000, 0.8, rescale=False) == 0.8 and p_schedule(11, 5000, 0.8, rescale=False) == 0.4
    assert p_schedule(4999, 5000, 0.8, rescale=False) == pytest.approx(0.8 / 128)


def _reference_window(side, power, norm):
    # The reference's `eta`, written as its loops: concentric rectangles
    # around (rows // 2, cols // 2) adding 1 / (k + 1)^power for ring k, in
    # the top side // 2 rows and, negated, in the others; unit norm (L2 for
    # power 2, L1 for power 4).
    def rectangles(rows, cols):
        delta = np.zeros([rows, cols])
        for k in range(max(rows // 2 + 1, cols // 2 + 1)):
            delta[max(rows // 2 - k, 0):rows // 2 + k + 1,
                  max(cols // 2 - k, 0):cols // 2 + k + 1] += 1 / (k + 1) ** power
        return delta / norm(delta) if rows else delta

    out = np.concatenate([rectangles(side // 2, side), -rectangles(side - side // 2, side)])
    return out / norm(out)


@pytest.mark.parametrize("side", [1, 2, 3, 6, 7, 29])
def test_window_patterns_are_the_references(side):
    np.testing.assert_allclose(l2_window(side), _reference_window(side, 2, lambda d: np.sqrt(np.sum(d ** 2))),
                               atol=1e-12)
    np.testing.assert_allclose(l1_window(side), _reference_window(side, 4, lambda d: np.sum(np.abs(d))),
                               atol=1e-12)


def test_l1_start_is_the_grid_projected_onto_ball_and_box():
    # A 10 x 10 image: 25 windows of L1 norm 1 per channel (50 in all), projected onto the L1 ball of
    # radius 3 (soft thresholding: the sign pattern survives where anything does) or left alone at 60.
    x = np.full([4, 10, 10, 2], 0.5, np.float32)
    model, y = helpers.tiny_classifier((10, 10, 2)), np.zeros(4, "int64")
    for eps, norm in ((3.0, 3.0 * (1 - 1e-6)), (60.0, 50.0)):
        delta = Square(eps, norm="l1", queries=1)(model, x, y).numpy() - x
        np.testing.assert_allclose(np.abs(delta).sum(axis=(1, 2, 3)), norm, rtol=1e-5)
    pattern = l1_window(2)
    block = delta[0, :2, :2, 0]
    assert any(np.allclose(block, p, atol=1e-6) for p in (pattern, -pattern, pattern.T, -pattern.T))


def test_l2_start_is_the_grid_of_windows_at_norm_eps():
    # A 10 x 10 image: windows of side 2 on a 5 x 5 grid from offset 0, each
    # holding l2_window(2) or its transpose with a random sign per channel.
    x = np.full([6, 10, 10, 2], 0.5, np.float32)
    start = Square(0.5, norm="l2", queries=1)(helpers.tiny_classifier((10, 10, 2)), x, np.zeros(6, "int64"))
    delta = start.numpy() - x
    np.testing.assert_allclose(np.sqrt(np.sum(delta ** 2, axis=(1, 2, 3))), 0.5, rtol=1e-5)
    pattern = l2_window(2)
    seen = set()
    for b in range(6):
        for i in range(5):
            for j in range(5):
                for c in range(2):
                    block = delta[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
                    block = block / np.sqrt(np.sum(block ** 2))
                    match = [k for k, p in enumerate((pattern, -pattern, pattern.T, -pattern.T))
                             if np.allclose(block, p, atol=1e-5)]
                    assert match, block
                    seen.add(match[0])
    assert seen == {0, 1, 2, 3}


def test_l2_sides_are_odd_and_at_least_3():
    sides = Square(1.0, norm="l2", queries=1000)._sides(32, 32)
    assert sides[0] == 29 and sides[-1] == 3 and all(s % 2 == 1 and 3 <= s <= 32 for s in sides)
    assert Square(1.0, queries=1000)._sides(32, 32)[-1] == 1


@pytest.mark.parametrize("attack", [Square(0.1, queries=15), Square(1.0, norm="l2", queries=15),
                                    Square(2.0, norm="l1", queries=15)])
def test_result_of_an_element_does_not_depend_on_its_batch(attack):
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
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


def test_l2_and_l1_square_break_a_model_whose_gradients_are_masked():
    # The input is rounded to 8 levels (zero gradient) before a linear layer:
    # PGD and APGD under L2 cannot move, random search over scores can (under L2 and L1).
    x, y = helpers.separable_data(n=100, num_classes=2)
    linear = helpers.train_tiny(x, y, num_classes=2)
    x, y = x[:40], y[:40]
    inputs = keras.Input((8, 8, 1))
    quantised = keras.layers.Lambda(lambda v: tf.round(v * 7.0) / 7.0)(inputs)
    masked = keras.Model(inputs, linear(quantised))
    acc = lambda xa: float(np.mean(np.argmax(masked(xa), -1) == y))  # noqa: E731
    assert acc(x) > 0.9
    assert acc(PGD(4.0, norm="l2", steps=3)(masked, x, y)) > 0.9
    assert acc(APGD(4.0, norm="l2", steps=3)(masked, x, y)) > 0.9
    x_adv = Square(4.0, norm="l2", queries=200)(masked, x, y).numpy()
    assert np.sqrt(np.sum((x_adv - x) ** 2, axis=(1, 2, 3))).max() <= 4.0 + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert acc(x_adv) < 0.2
    # Under L1 the square's two halves push opposite ways on this model's stripes: the reference's
    # Square, run beside it on the unquantised model, also breaks none at eps 16 and all at 32.
    assert acc(APGD(32.0, norm="l1", steps=3)(masked, x, y)) > 0.9
    x_adv = Square(32.0, norm="l1", queries=200)(masked, x, y).numpy()
    assert np.abs(x_adv - x).sum(axis=(1, 2, 3)).max() <= 32.0 + 1e-4
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert acc(x_adv) < 0.2


def test_bad_parameters_raise():
    for kwargs in ({"eps": 0.0}, {"eps": 0.1, "queries": 0}, {"eps": 0.1, "p_init": 1.5},
                   {"eps": 0.1, "loss": "dlr"}, {"eps": 0.1, "norm": "l0"}, {"eps": 0.1, "rescale_schedule": 1}):
        with pytest.raises(ValueError, match="Received"):
            Square(**kwargs)
    for norm in ("l2", "l1"):
        with pytest.raises(ValueError, match="5 x 5"):
            Square(0.5, norm=norm)(helpers.tiny_classifier((4, 4, 1)), np.zeros([1, 4, 4, 1], np.float32), [0])
    assert build("square", 0.3, queries=7).queries == 7


class _CountingForward(keras.layers.Layer):
    """Counts the forward passes through it (inside a traced loop too)."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, inputs):
        self.calls.assign_add(1.0)
        return inputs


@pytest.mark.parametrize("eps,stops_early", [(1.0, True), (1e-4, False)])
def test_queries_stop_once_every_point_is_misclassified(eps, stops_early):
    keras.utils.set_random_seed(0)
    counter = _CountingForward()
    model = keras.Sequential([keras.Input((8, 8, 1)), counter, keras.layers.Flatten(), keras.layers.Dense(3)])
    x, _, seeds = helpers.toy_data(n=8)
    y = np.argmax(model(x, training=False), -1)
    attack = Square(eps, queries=200)
    before = float(counter.calls.numpy())
    x_adv = attack(model, x, y, seeds).numpy()
    forwards = float(counter.calls.numpy()) - before
    broken = np.argmax(model(x_adv, training=False), -1) != y
    if stops_early:  # a ball that reaches every class: all broken within a few queries, and no query after
        assert broken.all() and forwards < 50
    else:  # a tiny ball: points stay robust and every query is made (one forward for the start, one per query)
        assert not broken.any() and forwards == 200


class _CountingImages(keras.layers.Layer):
    """Counts the images forwarded through it."""

    def build(self, input_shape):
        self.images = self.add_weight(shape=(), initializer="zeros", trainable=False, name="images")

    def call(self, inputs):
        self.images.assign_add(tf.cast(tf.shape(inputs)[0], tf.float32))
        return inputs


def test_queries_forward_only_the_points_still_robust():
    # Class 0 when the mean pixel exceeds 0.5. At eps 0.1, the points at 0.52 can be broken (within a few
    # queries) and those at 0.1 cannot: after the start, only the points not yet broken are forwarded, so the
    # robust ones every query and the others a few times. The result is the whole batch's (as under XLA).
    counter = _CountingImages()
    dense = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((8, 8, 1)), counter, keras.layers.Flatten(), dense])
    dense.set_weights([np.stack([np.full(64, 1 / 64), np.zeros(64)], 1).astype("float32"),
                       np.array([0.0, 0.5], np.float32)])
    x = np.repeat(np.array([0.52, 0.1] * 4, np.float32), 64).reshape(8, 8, 8, 1)
    y = np.array([0, 1] * 4)
    _, _, seeds = helpers.toy_data(n=8)
    attack = Square(0.1, queries=100)
    before = float(counter.images.numpy())
    x_adv = attack(model, x, y, seeds).numpy()
    images = float(counter.images.numpy()) - before
    broken = np.argmax(model(x_adv, training=False), -1) != y
    np.testing.assert_array_equal(broken, [True, False] * 4)
    assert 8 + 4 * 99 <= images < 8 + 5 * 99  # the start, the robust half each query, the rest a few times
    whole = tf.function(lambda x, y, s: attack(model, x, y, s), jit_compile=True)(x, y, seeds).numpy()
    np.testing.assert_allclose(whole, x_adv, atol=1e-6)
