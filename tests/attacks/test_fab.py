import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import build, registry
from tfrobust.attacks.fab import FAB, project_l1, project_l2, project_linf

_DUAL = {"linf": 1, "l2": 2}  # the dual norm's order: L1 for Linf, L2 for L2
_ORDER = {"linf": np.inf, "l2": 2, "l1": 1}


def _l1_distance_in_box(normal, x, gap):
    """The smallest L1 move of `x` in [0, 1] that raises `<normal, x>` by `gap`: the largest |normal_i| first."""
    room = np.where(normal > 0, 1.0 - x, x)
    total = 0.0
    for i in np.argsort(-np.abs(normal)):
        move = min(room[i], gap / abs(normal[i]))
        total, gap = total + move, gap - abs(normal[i]) * move
        if gap <= 0:
            return total
    return np.inf


def _linear_model(weights, bias, shape=(4, 4, 1)):
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(len(bias))])
    model.layers[-1].set_weights([weights.astype("float32"), bias.astype("float32")])
    return model


def _linear_problem(num_classes, n=8, seed=0):
    """A linear classifier, points near 0.5 it classifies as class 0, and class 1 as the only near rival.

    Returns the model, x, y, and each point's closed-form minimal distance to
    the boundary between classes 0 and 1 under each norm: `|z_0 - z_1|`
    over the dual norm of `W_1 - W_0`. The other classes' biases are so low
    that they never compete, so that boundary is the nearest decision
    boundary and the box [0, 1] is never reached.
    """
    rng = np.random.RandomState(seed)
    dim = 16
    weights = rng.randn(dim, num_classes)
    x = (0.5 + 0.05 * rng.randn(n, 4, 4, 1)).astype("float32")
    flat = x.reshape(n, dim).astype("float64")
    bias = np.zeros(num_classes)
    bias[2:] = -100.0
    # Class 1's bias puts every point 0.1 or more on class 0's side of their boundary.
    bias[1] = np.min(flat @ (weights[:, 0] - weights[:, 1])) - 0.1
    model = _linear_model(weights, bias)
    logits = flat @ weights + bias
    gap = logits[:, 0] - logits[:, 1]
    assert np.all(gap > 0) and np.all(np.argmax(logits, 1) == 0)
    normal = weights[:, 1] - weights[:, 0]
    expected = {norm: gap / np.linalg.norm(normal, order) for norm, order in _DUAL.items()}
    # Under L1 the cheapest move piles onto the pixels of largest weight, where the box can bind.
    expected["l1"] = np.array([_l1_distance_in_box(normal, f, g) for f, g in zip(flat, gap)])
    return model, x, np.zeros(n, "int64"), expected


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("num_classes,target_classes", [(2, 1), (5, 4), (5, None)])
def test_fab_finds_the_closed_form_minimal_perturbation_of_a_linear_model(norm, num_classes, target_classes):
    model, x, y, expected = _linear_problem(num_classes)
    attack = FAB(eps=1.0, norm=norm, target_classes=target_classes)
    x_min, distance = attack.minimal(model, x, y)
    distance = distance.numpy()
    measured = np.linalg.norm((x_min.numpy() - x).reshape(len(x), -1), _ORDER[norm], axis=1)
    np.testing.assert_allclose(distance, measured, rtol=1e-5)
    # Never below the minimum (up to float32), and within 1% of it: the
    # overshoot eta and backward step beta leave FAB about 0.5% above.
    assert np.all(distance >= expected[norm] * (1 - 1e-4)), (distance, expected[norm])
    assert np.all(distance <= expected[norm] * 1.01), (distance / expected[norm])
    assert np.all(np.argmax(model(x_min), -1) == 1)  # misclassified as the target


@pytest.mark.parametrize("norm,nearest", [("linf", 1), ("l2", 2), ("l1", 2)])
def test_untargeted_fab_takes_the_boundary_nearest_in_the_norm(norm, nearest):
    # Class 1's boundary has a dense normal (all ones), class 2's a sparse one
    # (5 on one pixel): class 1 is nearer under Linf (gap / 16 against
    # gap / 5), class 2 under L2 (gap / 5 against gap / 4) and L1 (gap / 5 against gap / 1).
    rng = np.random.RandomState(1)
    x = (0.5 + 0.01 * rng.randn(4, 4, 4, 1)).astype("float32")
    flat = x.reshape(4, 16).astype("float64")
    weights = np.zeros((16, 3))
    weights[:, 1] = 1.0
    weights[0, 2] = 5.0
    bias = np.array([0.0, -flat.sum(1).mean() - 1.0, -5.0 * flat[:, 0].mean() - 1.0])
    model = _linear_model(weights, bias)
    logits = flat @ weights + bias
    order = _ORDER[norm]
    dual = {1: np.linalg.norm(weights[:, 1], {"linf": 1, "l2": 2, "l1": np.inf}[norm]), 2: 5.0}
    distances = np.stack([(logits[:, 0] - logits[:, k]) / dual[k] for k in (1, 2)], 1)
    assert np.all(np.argmin(distances, 1) == nearest - 1)
    x_min, distance = FAB(eps=1.0, norm=norm, steps=30).minimal(model, x, np.zeros(4, "int64"))
    expected = distances.min(1)
    assert np.all(distance.numpy() >= expected * (1 - 1e-4)) and np.all(distance.numpy() <= expected * 1.01)
    np.testing.assert_allclose(np.linalg.norm((x_min.numpy() - x).reshape(4, -1), order, axis=1),
                               distance.numpy(), rtol=1e-5)
    assert np.all(np.argmax(model(x_min), -1) == nearest)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_a_point_counts_as_broken_only_within_eps(norm):
    model, x, y, expected = _linear_problem(5, n=8)
    radius = float(np.median(expected[norm]))
    x_adv = FAB(eps=radius, norm=norm, target_classes=9, steps=30)(model, x, y).numpy()
    fooled = np.argmax(model(x_adv), -1) != y
    reach = expected[norm] * 1.01 <= radius
    out_of_reach = expected[norm] > radius
    assert reach.any() and out_of_reach.any()
    assert np.all(fooled[reach]) and not np.any(fooled[out_of_reach])
    np.testing.assert_array_equal(x_adv[~fooled], x[~fooled])  # the clean point where nothing was found


def _solve_by_bisection(t, w, b, norm):
    # The box-constrained projection's radius by bisection on the monotone
    # function g(r) = sum_i |w_i| min(move_i(r), room_i), move = r (Linf) or r |w_i| (L2).
    c = w @ t - b
    w = w * np.sign(c) if c != 0 else w
    c = abs(c)
    room = np.where(w > 0, t, 1 - t)

    def move(r):
        return np.minimum(r if norm == "linf" else r * np.abs(w), room) * (np.abs(w) > 0)

    if np.abs(w) @ room < c:
        return -np.sign(w) * room
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.abs(w) @ move(mid) < c else (lo, mid)
    return -np.sign(w) * move(hi)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projections_match_a_bisection_solver_with_the_box_active(norm):
    rng = np.random.RandomState(3)
    n, dim = 64, 50
    t = rng.rand(n, dim)
    t[:, :10] = np.round(t[:, :10])  # some coordinates on the box's faces
    w = rng.randn(n, dim) * rng.rand(n, 1) * 3
    w[:, 10:15] = 0.0  # some inactive coordinates
    # Offsets from near (box inactive) to far (box active) to unreachable.
    b = (w * t).sum(1) + rng.choice([-1, 1], n) * rng.uniform(0.01, 1.0, n) * np.abs(w).sum(1) * rng.rand(n)
    project = project_linf if norm == "linf" else project_l2
    got = project(tf.constant(t, tf.float32), tf.constant(w, tf.float32), tf.constant(b, tf.float32)).numpy()
    want = np.stack([_solve_by_bisection(t[i], w[i], b[i], norm) for i in range(n)])
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.all(t + got >= -1e-6) and np.all(t + got <= 1 + 1e-6)
    reached = np.isclose(((t + want) * w).sum(1), b, atol=1e-3)
    assert 0 < reached.sum() < n  # both feasible and unreachable hyperplanes were tested
    box_active = np.any(np.isclose(t + want, 0) | np.isclose(t + want, 1), axis=1) & reached
    assert box_active.any()


def test_l1_projection_is_the_cheapest_vertex_and_stays_in_the_box():
    # Every vertex of this linear program fills coordinates to the box in some order until the
    # hyperplane is reached; the projection must cost no more than any order tried, reach the
    # hyperplane when it can, and go to the box corner when it cannot.
    rng = np.random.RandomState(4)
    n, dim = 48, 12
    t = rng.rand(n, dim)
    t[:, :3] = np.round(t[:, :3])
    w = rng.randn(n, dim) * rng.rand(n, 1) * 3
    w[:, 3:5] = 0.0
    b = (w * t).sum(1) + rng.choice([-1, 1], n) * rng.uniform(0.01, 1.0, n) * np.abs(w).sum(1) * rng.rand(n)
    got = project_l1(tf.constant(t, tf.float32), tf.constant(w, tf.float32), tf.constant(b, tf.float32)).numpy()
    assert np.all(t + got >= -1e-6) and np.all(t + got <= 1 + 1e-6)
    reached = 0
    for i in range(n):
        c = w[i] @ t[i] - b[i]
        room = np.where(w[i] * np.sign(c) > 0, t[i], 1 - t[i])
        gain = np.abs(w[i]) * room
        if gain.sum() < abs(c):
            np.testing.assert_allclose(got[i], -np.sign(w[i] * c) * room, atol=1e-6)
            continue
        reached += 1
        np.testing.assert_allclose((t[i] + got[i]) @ w[i], b[i], atol=1e-4)
        for _ in range(50):
            left, cost = abs(c), 0.0
            for j in rng.permutation(np.flatnonzero(w[i])):
                move = min(room[j], left / abs(w[i, j]))
                cost, left = cost + move, left - abs(w[i, j]) * move
            assert np.abs(got[i]).sum() <= cost + 1e-5
    assert 0 < reached < n


@pytest.mark.parametrize("attack", [FAB(0.3, steps=3, target_classes=2), FAB(1.0, norm="l2", steps=3),
                                    FAB(2.0, norm="l1", steps=3, restarts=2, target_classes=2),
                                    FAB(0.3, steps=2, restarts=2, bn="batch_stats")])
def test_attack_contract_and_xla(attack):
    # run_attack_test compiles the attack with jit_compile=True and compares.
    helpers.run_attack_test(attack, check_loss=False, atol=1e-5)


def test_result_of_an_element_does_not_depend_on_its_batch():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    attack = FAB(0.3, steps=4, restarts=2, target_classes=2)
    full, dist = attack.minimal(model, x, y, s)
    part, part_dist = attack.minimal(model, x[3:9], y[3:9], s[3:9])
    np.testing.assert_allclose(part.numpy(), full.numpy()[3:9], atol=1e-6)
    np.testing.assert_allclose(part_dist.numpy(), dist.numpy()[3:9], rtol=1e-5)


def test_names_defaults_and_bad_parameters():
    fab_t = build("fab-t", 8 / 255)
    assert (fab_t.name, fab_t.target_classes, fab_t.steps, fab_t.restarts) == ("fab-t", 9, 100, 1)
    assert (fab_t.alpha_max, fab_t.eta, fab_t.beta) == (0.1, 1.05, 0.9)
    fab = build("fab", 0.5, "l2")
    assert (fab.name, fab.target_classes, fab.norm) == ("fab", None, "l2")
    assert FAB.from_config(fab_t.get_config()) == fab_t
    assert registry.from_config(fab_t.get_config()) == fab_t and registry.from_config(fab.get_config()) == fab
    for kwargs in ({"eps": 0.0}, {"eps": 0.1, "norm": "l0"}, {"eps": 0.1, "steps": 0},
                   {"eps": 0.1, "target_classes": 0}, {"eps": 0.1, "eta": 0.9}, {"eps": 0.1, "beta": 0.0},
                   {"eps": 0.1, "alpha_max": 2.0}, {"eps": 0.1, "bn": "train"}):
        with pytest.raises(ValueError, match="Received"):
            FAB(**kwargs)
