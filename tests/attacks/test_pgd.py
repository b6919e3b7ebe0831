import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import FGSM, PGD, build, losses, projections, registry

ATTACKS = {
    "fgsm": FGSM(0.1),
    "fgsm_rs": FGSM(0.1, random_start=True),
    "fgsm_l2": FGSM(0.5, norm="l2"),
    "pgd_linf": PGD(0.1, steps=3),
    "pgd_l2": PGD(0.5, norm="l2", steps=3),
    "pgd_margin": PGD(0.1, steps=3, loss="margin"),
    "pgd_restarts": PGD(0.1, steps=2, restarts=2),
    "pgd_last": PGD(0.1, steps=3, select="last"),
    "pgd_batch_stats": PGD(0.1, steps=2, bn="batch_stats"),
    "pgd_targeted": PGD(0.1, steps=3, targeted=True),
    "pgd_random_target": build("pgd-targeted", 0.1, steps=3),
    "multitargeted": build("multitargeted", 0.1, steps=2),
    "multitargeted_l2": build("multitargeted", 0.5, norm="l2", steps=2, restarts=2),
    "pgd_bfloat16": PGD(0.1, steps=3, precision="bfloat16"),
    "pgd_adam": PGD(0.1, steps=3, step_rule="adam", step_size=0.2, step_schedule=((2, 0.1),)),
    "pgd_adam_l2": PGD(0.5, norm="l2", steps=3, step_rule="adam", step_size=0.1),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name):
    helpers.run_attack_test(ATTACKS[name])


@pytest.mark.parametrize("name", ["fgsm_rs", "pgd_linf", "pgd_l2"])
def test_random_start_depends_on_seed(name):
    attack = ATTACKS[name]
    model = helpers.tiny_classifier()
    x, y, s = helpers.toy_data()
    a = attack(model, x, y, s).numpy()
    b = attack(model, x, y, s + 1).numpy()
    assert not np.array_equal(a, b)


def test_result_of_an_element_does_not_depend_on_its_batch():
    # Per-element seeds: the same element gets the same random start and the
    # same result whether it is attacked alone or in a larger batch.
    attack = PGD(0.1, steps=2)
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    full = attack(model, x, y, s).numpy()
    part = attack(model, x[3:7], y[3:7], s[3:7]).numpy()
    np.testing.assert_allclose(part, full[3:7], atol=1e-6)


def test_targeted_attack_moves_towards_target():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    target = (y + 1) % 3
    attack = PGD(0.3, steps=3, targeted=True)
    x_adv = attack(model, x, target, s)
    ce = lambda v: float(tf.reduce_mean(losses.cross_entropy(model(v), target)))  # noqa: E731
    assert ce(x_adv) < ce(x)


def test_random_targets_are_other_classes_uniformly_and_per_element():
    from tfrobust.attacks.pgd import random_targets

    n, k = 20000, 10
    y = tf.constant(np.arange(n) % k)
    seeds = tf.constant(np.stack([np.arange(n), np.arange(n) * 7 + 1], 1).astype("int32"))
    t = random_targets(y, seeds, k).numpy()
    assert not np.any(t == y.numpy())
    # Each of the 9 other classes, for every true class: about n / (k * (k - 1)) = 222 times.
    counts = np.zeros((k, k), int)
    np.add.at(counts, (y.numpy(), t), 1)
    off_diagonal = counts[~np.eye(k, dtype=bool)]
    assert off_diagonal.min() > 150 and off_diagonal.max() < 300
    # An element's target depends on its seed and label only, not on its batch.
    np.testing.assert_array_equal(random_targets(y[5:9], seeds[5:9], k).numpy(), t[5:9])


def test_random_target_attack_reaches_its_targets():
    from tfrobust.attacks.pgd import random_targets

    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    attack = build("pgd-targeted", 0.5, steps=3)
    assert attack.random_target and attack.name == "pgd-targeted"
    x_adv = attack(model, x, y, s)
    target = random_targets(y, s, 3)
    ce = lambda v: float(tf.reduce_mean(losses.cross_entropy(model(v), target)))  # noqa: E731
    assert ce(x_adv) < ce(x)
    with pytest.raises(ValueError, match="random_target"):
        PGD(0.1, random_target=True, targeted=True)


def test_restarts_keep_the_per_example_worst_case():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data(n=64)
    fooled = lambda a: (np.argmax(model(a(model, x, y, s)), -1) != y)  # noqa: E731
    one = fooled(PGD(0.05, steps=2, restarts=1))
    three = fooled(PGD(0.05, steps=2, restarts=3))
    assert np.all(three >= one)


def _separable_data(n=200, seed=0):
    # Class = which half of the image is brighter: learnable in a few steps.
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    x = rng.rand(n, 8, 8, 1).astype("float32") * 0.5
    x[y == 0, :, :4] += 0.5
    x[y == 1, :, 4:] += 0.5
    return x, y.astype("int64")


def test_undefended_model_falls_to_zero_at_large_eps():
    x, y = _separable_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=50, verbose=0)
    clean = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    assert clean > 0.95
    x_adv = PGD(0.5, steps=3)(model, x, y)
    robust = np.mean(np.argmax(model.predict(x_adv.numpy(), verbose=0), -1) == y)
    assert robust < 0.02


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"eps": 0.0}, ValueError),
        ({"eps": -0.1}, ValueError),
        ({"eps": "0.3"}, TypeError),
        ({"eps": 0.1, "step_size": 0.0}, ValueError),
        ({"eps": 0.1, "steps": 0}, ValueError),
        ({"eps": 0.1, "restarts": 0}, ValueError),
        ({"eps": 0.1, "norm": "l1"}, ValueError),
        ({"eps": 0.1, "loss": "hinge"}, ValueError),
        ({"eps": 0.1, "bn": "train"}, ValueError),
        ({"eps": 0.1, "step_rule": "momentum"}, ValueError),
        ({"eps": 0.1, "step_schedule": ((0, 0.1),)}, ValueError),
        ({"eps": 0.1, "step_schedule": ((5, 0.1), (5, 0.1))}, ValueError),
        ({"eps": 0.1, "step_schedule": ((5, -0.1),)}, ValueError),
        ({"eps": 0.1, "step_schedule": (5, 0.1)}, ValueError),
        ({"eps": 0.1, "step_schedule": ((5, "x"),)}, ValueError),
        ({"eps": 0.1, "steps": 5, "step_schedule": ((5, 0.1),)}, ValueError),
        ({"eps": 0.1, "target_classes": 3}, ValueError),  # needs the margin loss
        ({"eps": 0.1, "loss": "margin", "target_classes": 3, "targeted": True}, ValueError),
        ({"eps": 0.1, "loss": "margin", "target_classes": -1}, ValueError),
        ({"eps": 0.1, "loss": "margin", "target_classes": 2.0}, ValueError),
    ],
)
def test_bad_parameters_raise(kwargs, error):
    with pytest.raises(error, match="Received"):
        PGD(**kwargs)


def test_bad_inputs_raise():
    model = helpers.tiny_classifier()
    x, y, s = helpers.toy_data()
    attack = PGD(0.1, steps=1)
    with pytest.raises(TypeError, match="x.dtype=uint8"):
        attack(model, (x * 255).astype("uint8"), y, s)
    with pytest.raises(ValueError, match="rank 4"):
        attack(model, x[0], y, s)
    with pytest.raises(ValueError, match="max="):
        attack(model, x * 2.0, y, s)


def test_registry_builds_named_attacks():
    assert build("pgd_margin", 0.3, steps=5).loss == "margin"
    assert build("fgsm_rs", 0.3).step_size == pytest.approx(0.375)
    assert PGD(0.3, steps=10).step_size == pytest.approx(0.075)
    with pytest.raises(ValueError, match="name='apgd'"):
        build("apgd", 0.3)


def test_margin_loss_is_positive_iff_misclassified():
    logits = tf.constant([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    m = losses.margin(logits, tf.constant([0, 0])).numpy()
    assert m[0] == pytest.approx(-1.0) and m[1] == pytest.approx(3.0)


def test_l2_projection_stays_in_ball():
    x = tf.fill([2, 4, 4, 1], 0.5)
    far = x + tf.random.normal([2, 4, 4, 1], seed=1)
    p = projections.l2_project(far, x, 0.2)
    assert float(tf.reduce_max(projections.distance(p, x, "l2"))) <= 0.2 + 1e-6


def test_nfgsm_starts_wide_and_is_not_projected_to_eps():
    # de Jorge et al. 2022: noise of radius 2 eps, a step of eps, no
    # projection to the eps-ball; so the perturbation reaches past eps.
    from tfrobust.attacks import NFGSM

    attack = NFGSM(0.05)
    assert attack.eps == pytest.approx(0.15) and attack.init_radius == pytest.approx(0.1)
    assert attack.step_size == pytest.approx(0.05)
    model = helpers.tiny_classifier()
    x, y, s = helpers.toy_data(n=64)
    x = 0.2 + 0.6 * x  # keep clipping out of the way
    x_adv = helpers.run_attack_test(attack, model=model, data=(x, y, s))
    dist = np.abs(x_adv - x).max(axis=(1, 2, 3))
    assert dist.max() > 0.1 and dist.max() <= 0.15 + 1e-6
    assert build("nfgsm", 0.05).name == "nfgsm"


def test_bfloat16_attack_agrees_with_float32_and_restores_the_model():
    from tfrobust import models
    from tfrobust.attacks import base

    keras.utils.set_random_seed(0)
    model = models.cifar_resnet(8)
    x = tf.random.stateless_uniform([8, 32, 32, 3], seed=[1, 1])
    y = tf.constant(np.arange(8) % 10)
    forward16 = base.forward_fn(model, "inference", "bfloat16")
    logits16 = forward16(x)
    assert logits16.dtype == tf.bfloat16
    assert all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers())
    ref = model(x, training=False)
    assert ref.dtype == tf.float32
    np.testing.assert_allclose(np.float32(logits16), ref.numpy(), atol=0.1 * float(np.abs(ref).max()) + 0.05)

    def input_grad(forward):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(losses.cross_entropy(tf.cast(forward(x), tf.float32), y))
        return tape.gradient(loss, x).numpy()

    g16, g32 = input_grad(forward16), input_grad(base.forward_fn(model, "inference"))
    assert g16.dtype == np.float32
    # The Linf step uses only the sign: bfloat16 keeps it for the large majority of pixels.
    big = np.abs(g32) > np.quantile(np.abs(g32), 0.5)
    assert np.mean(np.sign(g16[big]) == np.sign(g32[big])) > 0.9
    x_adv = PGD(8 / 255, steps=2, precision="bfloat16")(model, x, y)
    assert x_adv.dtype == tf.float32 and float(tf.reduce_max(tf.abs(x_adv - x))) <= 8 / 255 + 1e-6
    with pytest.raises(ValueError, match="precision"):
        PGD(0.1, precision="float16")


def _two_class_linear_model(seed=3):
    # Logits linear in x with 2 classes: the cross-entropy's input gradient for label 0 is
    # p1 * (w1 - w0), so its sign per pixel never changes along the attack.
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])


def test_step_schedule_scales_later_steps():
    model = _two_class_linear_model()
    x = np.full((2, 4, 4, 1), 0.5, "float32")
    y = np.zeros(2, "int64")
    attack = PGD(0.4, steps=3, step_size=0.01, init="none", select="last", step_schedule=((2, 0.1),))
    moved = np.abs(attack(model, x, y).numpy() - x)
    # Steps 0 and 1 move each pixel 0.01, step 2 moves it 0.001.
    np.testing.assert_allclose(moved, 0.021, atol=1e-6)
    twice = attack.replace(step_schedule=((1, 0.5), (2, 0.5)))
    np.testing.assert_allclose(np.abs(twice(model, x, y).numpy() - x), 0.0175, atol=1e-6)


def _numpy_adam_pgd(model, x, y, eps, steps, lr, schedule):
    # An independent Adam, written from Kingma & Ba's algorithm as optax's scale_by_adam runs it.
    x_adv, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        xt = tf.constant(x_adv)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(losses.cross_entropy(model(xt, training=False), y))
        g = tape.gradient(loss, xt).numpy()
        rate = lr * np.prod([s for b, s in schedule if t - 1 >= b])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        update = rate * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-9)
        x_adv = np.clip(np.clip(x_adv + update, x - eps, x + eps), 0.0, 1.0)
    return x_adv


def test_adam_step_rule_matches_a_reference_adam():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    attack = PGD(0.1, steps=3, step_rule="adam", step_size=0.03, init="none", select="last",
                 step_schedule=((2, 0.1),))
    got = attack(model, x, y, s).numpy()
    want = _numpy_adam_pgd(model, x, y, 0.1, 3, 0.03, ((2, 0.1),))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Adam's later steps differ from signed steps of the same size: the rule is really used.
    signed = attack.replace(step_rule="sign")(model, x, y, s).numpy()
    assert np.abs(signed - got).max() > 1e-3


def test_adam_first_step_is_a_signed_step():
    # With bias correction m_hat / sqrt(v_hat) = g / |g| on the first step: FGSM's step, up to Adam's
    # epsilon of 1e-9 (a pixel whose gradient is 1e-5 moves 0.01% less).
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    adam = PGD(0.05, steps=1, step_rule="adam", step_size=0.02, init="none", select="last")
    got = adam(model, x, y, s).numpy()
    np.testing.assert_allclose(got, adam.replace(step_rule="sign")(model, x, y, s).numpy(), atol=1e-5)
    assert np.abs(got - x).max() == pytest.approx(0.02, abs=1e-6)


def test_adam_config_survives_json():
    import json

    attack = PGD(8 / 255, steps=10, step_rule="adam", step_size=0.1, step_schedule=((5, 0.1),))
    again = PGD.from_config(json.loads(json.dumps(attack.get_config())))
    assert again == attack and again.step_schedule == ((5, 0.1),)


def test_target_margin_is_the_target_logit_minus_the_true_one():
    logits = tf.constant([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    got = losses.target_margin(logits, tf.constant([0, 1]), tf.constant([2, 0])).numpy()
    np.testing.assert_allclose(got, [-3.0, -3.0])


def _linear_model(num_classes, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def test_multitargeted_is_exact_on_a_linear_model():
    # For logits W x + b, max over the Linf ball (and [0, 1]) of z_t - z_y is reached in one signed step of eps
    # from x, so an example survives all K-1 targets exactly when it is robust: the brute-force answer below.
    eps, k = 0.15, 4
    model = _linear_model(k, seed=5)
    x, _, s = helpers.toy_data(n=64, shape=(4, 4, 1))
    y = np.argmax(model(x).numpy(), -1)
    w, b = (v.numpy() for v in model.weights)
    flat = x.reshape(len(x), -1)
    robust = np.ones(len(x), bool)
    for t in range(k):
        d = w[:, t] - w[:, y].T  # [N, D]: the input direction that raises z_t - z_y
        worst = np.clip(flat + eps * np.sign(d), np.maximum(flat - eps, 0), np.minimum(flat + eps, 1))
        gap = np.sum(d * worst, -1) + b[t] - b[y]
        robust &= (t == y) | (gap < 0)
    assert 0 < robust.sum() < len(x)  # the test distinguishes something
    attack = build("multitargeted", eps, steps=1, step_size=eps, init="none")
    x_adv = attack(model, x, y, s)
    survived = np.argmax(model(x_adv).numpy(), -1) == y
    np.testing.assert_array_equal(survived, robust)
    # One target (the likeliest wrong class) finds fewer: the others matter.
    one = build("multitargeted", eps, steps=1, step_size=eps, init="none", target_classes=1)
    assert (np.argmax(model(one(model, x, y, s)).numpy(), -1) == y).sum() > robust.sum()


def test_multitargeted_targets_the_likeliest_wrong_classes_in_order():
    from tfrobust.attacks import pgd as pgd_lib

    logits = tf.constant([[0.0, 5.0, 3.0, 4.0], [9.0, 1.0, 2.0, 3.0]])
    ranks = pgd_lib._likely_wrong_classes(logits, tf.constant([1, 3]), 3)
    np.testing.assert_array_equal(np.stack([r.numpy() for r in ranks], -1), [[3, 2, 0], [0, 2, 1]])


def test_multitargeted_round_trips_and_evaluations_accept_it():
    from tfrobust.config import EVAL_ATTACKS

    attack = build("multitargeted", 8 / 255, steps=20, restarts=2)
    assert (attack.target_classes, attack.loss, attack.restarts, attack.name) == (9, "margin", 2, "multitargeted")
    assert registry.from_config(attack.get_config()) == attack
    # APGD also has target_classes; each config must rebuild its own class.
    for other in (PGD(0.1), build("apgd-t", 0.1, steps=2)):
        assert registry.from_config(other.get_config()) == other
    assert "multitargeted" in EVAL_ATTACKS
