import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import APGD, PGD, build, losses
from tfrobust.attacks import projections
from tfrobust.attacks.apgd import checkpoints, large_eps_stages

ATTACKS = {
    "apgd_ce_linf": APGD(0.1, steps=3),
    "apgd_ce_l2": APGD(0.5, norm="l2", steps=3),
    "apgd_dlr": APGD(0.1, steps=3, loss="dlr"),
    "apgd_t": APGD(0.1, steps=2, loss="dlr_targeted", target_classes=2),
    "apgd_restarts": APGD(0.1, steps=2, restarts=2),
    "apgd_batch_stats": APGD(0.1, steps=2, bn="batch_stats"),
    "apgd_ce_l1": APGD(1.0, norm="l1", steps=3),
    "apgd_t_l1_large_eps": APGD(1.0, norm="l1", steps=3, loss="dlr_targeted", target_classes=2, large_eps=True),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name):
    data = helpers.toy_data(num_classes=5) if "apgd_t" in name else None
    model = helpers.tiny_classifier(num_classes=5) if data else None
    helpers.run_attack_test(ATTACKS[name], model=model, data=data)


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations
    # (Croce & Hein, section 3.2), in the reference code's integer form.
    marks, windows = checkpoints(100)
    assert [m + 1 for m in marks] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert windows == [22, 19, 16, 13, 10, 7, 6, 6]
    assert checkpoints(3) == ([0, 1, 2], [1, 1, 1])


def test_dlr_losses():
    logits = tf.constant([[4.0, 3.0, 1.0, 0.0], [0.0, 5.0, 2.0, 1.0]])
    y = tf.constant([0, 0])
    # (max_other - z_y) / (z1 - z3): (3 - 4) / (4 - 1) and (5 - 0) / (5 - 1).
    np.testing.assert_allclose(losses.dlr(logits, y).numpy(), [-1 / 3, 5 / 4], rtol=1e-6)
    # (z_t - z_y) / (z1 - (z3 + z4) / 2), target class 2.
    t = tf.constant([2, 2])
    np.testing.assert_allclose(
        losses.dlr_targeted(logits, y, t).numpy(), [(1 - 4) / 3.5, (2 - 0) / 4.5], rtol=1e-6
    )
    # Shift and scale invariance, which cross-entropy lacks.
    np.testing.assert_allclose(
        losses.dlr(7.0 * logits + 3.0, y).numpy(), losses.dlr(logits, y).numpy(), rtol=1e-5
    )


def test_result_of_an_element_does_not_depend_on_its_batch():
    model = helpers.tiny_classifier(batch_norm=False, num_classes=5)
    x, y, s = helpers.toy_data(num_classes=5)
    for attack in (APGD(0.1, steps=3), APGD(0.1, steps=2, loss="dlr_targeted", target_classes=2),
                   APGD(1.0, norm="l1", steps=3, large_eps=True)):
        full = attack(model, x, y, s).numpy()
        part = attack(model, x[3:7], y[3:7], s[3:7]).numpy()
        np.testing.assert_allclose(part, full[3:7], atol=1e-6)


def test_start_lies_on_the_sphere_and_depends_on_the_seed():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    x = 0.25 + 0.5 * x  # away from the box, so clipping does not shorten the start
    a = APGD(0.1, steps=1)(model, x, y, s).numpy()
    b = APGD(0.1, steps=1)(model, x, y, s + 1).numpy()
    assert not np.array_equal(a, b)


def test_step_size_halves_when_the_loss_stalls():
    # A model whose loss cannot rise (constant logits): every checkpoint sees
    # no progress, so the step halves from 2 eps down, and the result never
    # leaves the ball even so.
    class Constant(tf.Module):
        def __call__(self, x, training=False):
            return tf.zeros([tf.shape(x)[0], 3]) + 0.0 * tf.reduce_sum(x, [1, 2, 3])[:, None]

    x, y, s = helpers.toy_data()
    x_adv = APGD(0.1, steps=10)(Constant(), x, y, s)
    assert np.abs(x_adv.numpy() - x).max() <= 0.1 + 1e-6


def _gain_within_l1(w, x, budget):
    """The largest rise of `w.x` over moves of L1 norm `budget` inside [0, 1]: fill the largest `|w_i|` first."""
    room = np.where(w > 0, 1.0 - x, x)
    gain = 0.0
    for i in np.argsort(-np.abs(w)):
        move = min(room[i], budget)
        gain, budget = gain + abs(w[i]) * move, budget - move
    return gain


@pytest.mark.parametrize("large_eps", [False, True])
def test_l1_apgd_breaks_a_linear_model_exactly_where_the_l1_distance_to_the_boundary_is_within_eps(large_eps):
    # Two classes, logits [0, w.x + b_k]: b_k puts point k at L1 distance d_k from the boundary (in the
    # box), so the points within eps are the breakable ones: ten steps (a linear model is cheap) break
    # every point within 0.95 eps, with or without the large-eps schedule, and none beyond eps falls.
    rng = np.random.default_rng(0)
    w = rng.choice([-1.0, 1.0], size=64) * rng.uniform(0.1, 1.0, size=64)
    x = rng.uniform(0.2, 0.8, size=(40, 8, 8, 1)).astype("float32")
    distance = np.linspace(0.05, 2.0, 40)
    b = tf.constant([-(xi @ w) - _gain_within_l1(w, xi, d) for xi, d in zip(x.reshape(40, -1), distance)],
                    tf.float32)
    w = tf.constant(w, tf.float32)

    def model(v, training=False):
        z = tf.reduce_sum(tf.reshape(v, [-1, 64]) * w, 1) + b
        return tf.stack([tf.zeros_like(z), z], 1)

    y = np.zeros(40, np.int64)
    s = tf.stack([tf.range(40), tf.zeros(40, tf.int32)], 1)
    x_adv = APGD(1.0, norm="l1", steps=10, large_eps=large_eps)(model, x, y, s)
    broken = np.argmax(model(x_adv).numpy(), -1) != 0
    assert projections.distance(x_adv, x, "l1").numpy().max() <= 1.0 + 1e-5
    assert broken[distance < 0.95].all(), distance[~broken]
    assert not broken[distance > 1.0].any()


def test_large_eps_splits_the_iterations_as_the_reference():
    assert large_eps_stages(100) == ((3.0, 30), (2.0, 30), (1.0, 40))
    assert large_eps_stages(3) == ((3.0, 1), (2.0, 1), (1.0, 1))
    assert all(sum(n for _, n in large_eps_stages(k)) == k and min(n for _, n in large_eps_stages(k)) >= 0
               for k in range(1, 30))


def _trained():
    x, y = helpers.separable_data(n=200, num_classes=4)
    return helpers.train_tiny(x, y, num_classes=4), x, y


def test_apgd_breaks_an_undefended_model_and_matches_or_beats_pgd():
    model, x, y = _trained()
    acc = lambda a: float(np.mean(np.argmax(model(a(model, x, y)), -1) == y))  # noqa: E731
    pgd = acc(PGD(0.15, steps=3))
    apgd = acc(APGD(0.15, steps=3))
    apgd_t = acc(APGD(0.15, steps=3, loss="dlr_targeted", target_classes=3))
    assert apgd <= pgd + 0.02, (apgd, pgd)
    assert apgd_t <= pgd + 0.02, (apgd_t, pgd)
    assert acc(APGD(0.5, steps=3)) < 0.02


def test_eot_averages_gradients_of_a_random_model():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    one = APGD(0.1, steps=2)(model, x, y, s).numpy()
    three = APGD(0.1, steps=2, eot=3)(model, x, y, s).numpy()
    # A deterministic model gives the same gradient on every pass.
    np.testing.assert_allclose(three, one, atol=1e-6)


def test_apgd_t_needs_four_classes():
    model = helpers.tiny_classifier(num_classes=3)
    x, y, s = helpers.toy_data()
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGD(0.1, steps=1, loss="dlr_targeted")(model, x, y, s)


@pytest.mark.parametrize(
    "kwargs",
    [{"eps": 0.0}, {"eps": 0.1, "steps": 0}, {"eps": 0.1, "loss": "margin"},
     {"eps": 0.1, "rho": 1.5}, {"eps": 0.1, "eot": 0}, {"eps": 0.1, "norm": "l0"},
     {"eps": 0.1, "large_eps": True}, {"eps": 0.1, "norm": "l1", "large_eps": 1}],
)
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        APGD(**kwargs)


def test_registry_names():
    assert build("apgd-ce", 0.3).loss == "ce"
    assert build("apgd_ce", 0.3).name == "apgd-ce"
    assert build("apgd-t", 0.3).loss == "dlr_targeted"
    assert build("apgd-t", 0.3).name == "apgd-t"
    assert build("apgd-dlr", 0.3, steps=5).steps == 5
