import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import losses, registry
from tfrobust.attacks.stadv import StAdv, flow_loss, project_flow, warp

ATTACKS = {
    "margin": StAdv(eps=0.5, steps=3),
    "ce_last": StAdv(eps=0.5, steps=3, loss="ce", select="last"),
    "uniform_start": StAdv(eps=0.5, steps=2, init="uniform"),
    "one_step": StAdv(eps=0.5, steps=1, tau=0.0),
    "batch_stats": StAdv(eps=0.5, steps=2, bn="batch_stats"),
}


def _max_displacement(flow):
    return np.sqrt((np.asarray(flow) ** 2).sum(-1)).max()


def _margin(model, x, y):
    return float(tf.reduce_mean(losses.margin(model(x, training=False), y)))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name):
    # helpers.run_attack_test measures pixel-value norms; a flow attack is
    # bounded in pixel displacement, so the contract is checked here.
    attack = ATTACKS[name]
    model = helpers.tiny_classifier()
    x, y, s = helpers.toy_data()
    model(x[:1])
    before = [w.numpy().copy() for w in model.non_trainable_weights]

    flow = attack.flow(model, x, y, s).numpy()
    assert flow.shape == x.shape[:3] + (2,)
    assert _max_displacement(flow) <= attack.eps * (1 + 1e-5)
    x_adv = attack(model, x, y, s).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    np.testing.assert_array_equal(x_adv, np.clip(warp(x, flow).numpy(), 0, 1))
    np.testing.assert_array_equal(attack(model, x, y, s).numpy(), x_adv)

    xla = tf.function(lambda a, b, c: attack(model, a, b, c), jit_compile=True)
    np.testing.assert_allclose(xla(x, y, s).numpy(), x_adv, atol=1e-5)

    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert helpers.bn_updates(model) == 0
    assert _margin(model, x_adv, y) > _margin(model, x, y)


def test_zero_flow_is_the_identity_exactly():
    x = helpers.toy_data(shape=(8, 8, 3))[0]
    zero = tf.zeros(x.shape[:3] + (2,))
    np.testing.assert_array_equal(warp(x, zero).numpy(), x)
    np.testing.assert_array_equal(tf.function(warp, jit_compile=True)(x, zero).numpy(), x)


@pytest.mark.parametrize("shift", [(1, -2), (-3, 0), (0, 1)])
def test_integer_flow_shifts_the_image(shift):
    # Backward flow: output (r, c) samples input (r + dr, c + dc).
    dr, dc = shift
    x = helpers.toy_data(shape=(8, 8, 2))[0]
    flow = np.broadcast_to(np.array([dr, dc], "float32"), x.shape[:3] + (2,))
    out = warp(x, flow).numpy()
    h, w = x.shape[1:3]
    rows = slice(max(0, -dr), h - max(0, dr))
    cols = slice(max(0, -dc), w - max(0, dc))
    src_rows = slice(rows.start + dr, rows.stop + dr)
    src_cols = slice(cols.start + dc, cols.stop + dc)
    np.testing.assert_array_equal(out[:, rows, cols], x[:, src_rows, src_cols])


def test_edges_are_replicated_and_agree_with_map_coordinates():
    # keras.ops.image.map_coordinates(order=1, fill_mode="nearest") is the
    # reference bilinear sampler with replicated edges.
    rng = np.random.RandomState(0)
    x = rng.rand(3, 6, 7, 2).astype("float32")
    flow = (2.5 * rng.randn(3, 6, 7, 2)).astype("float32")
    b, h, w, c = x.shape
    grid = np.meshgrid(np.arange(b), np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    coords = np.stack([grid[0], grid[1] + flow[..., :1], grid[2] + flow[..., 1:], grid[3]]).astype("float32")
    want = keras.ops.image.map_coordinates(x, coords, order=1, fill_mode="nearest")
    np.testing.assert_allclose(warp(x, flow).numpy(), keras.ops.convert_to_numpy(want), atol=1e-6)
    # Far off the image, every pixel takes the value of the nearest corner.
    far = np.broadcast_to(np.array([100.0, -100.0], "float32"), (b, h, w, 2))
    np.testing.assert_array_equal(warp(x, far).numpy(), np.broadcast_to(x[:, -1:, :1], x.shape))


def test_gradients_with_respect_to_the_flow_are_finite_nonzero_and_correct():
    rng = np.random.RandomState(0)
    x = tf.constant(rng.rand(2, 8, 8, 3).astype("float32"))
    weights = tf.constant(rng.randn(8, 8, 3).astype("float32"))

    def value_and_grad(flow):
        with tf.GradientTape() as tape:
            tape.watch(flow)
            value = tf.reduce_sum(warp(x, flow) * weights)
        return value, tape.gradient(value, flow)

    for flow in (tf.zeros([2, 8, 8, 2]), tf.constant(0.7 * rng.randn(2, 8, 8, 2).astype("float32"))):
        value, grad = value_and_grad(flow)
        g = grad.numpy()
        assert np.all(np.isfinite(g)) and np.mean(np.abs(g) > 0) > 0.5
        _, grad_xla = tf.function(value_and_grad, jit_compile=True)(flow)
        np.testing.assert_allclose(grad_xla.numpy(), g, atol=1e-5)
    # Central differences at a non-integer interior point (away from the kinks).
    f = np.full([2, 8, 8, 2], 0.3, "float32")
    _, grad = value_and_grad(tf.constant(f))
    for index in [(0, 3, 4, 0), (1, 5, 2, 1)]:
        up, down = f.copy(), f.copy()
        up[index] += 1e-2
        down[index] -= 1e-2
        numeric = (value_and_grad(tf.constant(up))[0] - value_and_grad(tf.constant(down))[0]) / 2e-2
        assert float(grad[index]) == pytest.approx(float(numeric), rel=1e-2, abs=1e-3)


def test_flow_loss_matches_a_hand_computed_value():
    # One interior pixel displaced by (3, 4), length 5: it differs from its 4
    # neighbours by 5 each, and every pair counts twice (Xiao et al., eq. 4).
    flow = np.zeros([1, 5, 5, 2], "float32")
    flow[0, 2, 2] = [3.0, 4.0]
    excess = flow_loss(flow) - flow_loss(np.zeros_like(flow))
    assert float(excess[0]) == pytest.approx(40.0, abs=1e-3)
    # A constant flow is perfectly smooth.
    constant = np.full([1, 5, 5, 2], 1.5, "float32")
    np.testing.assert_allclose(flow_loss(constant).numpy(), flow_loss(np.zeros_like(flow)).numpy())


def test_projection_scales_each_pixel_into_the_disc():
    flow = np.array([[[[3.0, 4.0], [0.1, 0.0], [0.0, 0.0]]]], "float32")
    out = project_flow(flow, 0.5).numpy()
    np.testing.assert_allclose(out[0, 0, 0], [0.3, 0.4], atol=1e-6)
    np.testing.assert_array_equal(out[0, 0, 1:], flow[0, 0, 1:])


def test_result_of_an_element_does_not_depend_on_its_batch():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    for attack in (StAdv(eps=0.5, steps=2), StAdv(eps=0.5, steps=2, init="uniform")):
        full = attack(model, x, y, s).numpy()
        part = attack(model, x[3:7], y[3:7], s[3:7]).numpy()
        np.testing.assert_allclose(part, full[3:7], atol=1e-6)


def test_random_start_depends_on_the_seed_and_zero_start_does_not():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    random = StAdv(eps=0.5, steps=1, init="uniform")
    assert not np.array_equal(random(model, x, y, s).numpy(), random(model, x, y, s + 1).numpy())
    zero = StAdv(eps=0.5, steps=1)
    np.testing.assert_array_equal(zero(model, x, y, s).numpy(), zero(model, x, y, s + 1).numpy())


def test_larger_tau_gives_a_smoother_flow():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    rough = StAdv(eps=0.5, steps=3, tau=0.0, select="last").flow(model, x, y, s)
    smooth = StAdv(eps=0.5, steps=3, tau=10.0, select="last").flow(model, x, y, s)
    assert float(tf.reduce_mean(flow_loss(smooth))) < float(tf.reduce_mean(flow_loss(rough)))


def test_eps_scale_shrinks_the_bound():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    flow = StAdv(eps=0.5, steps=2).flow(model, x, y, s, eps_scale=0.5)
    assert _max_displacement(flow) <= 0.25 * (1 + 1e-5)


def test_targeted_attack_moves_towards_target():
    model = helpers.tiny_classifier(batch_norm=False)
    x, y, s = helpers.toy_data()
    target = (y + 1) % 3
    x_adv = StAdv(eps=1.0, steps=3, targeted=True, loss="ce")(model, x, target, s)
    ce = lambda v: float(tf.reduce_mean(losses.cross_entropy(model(v), target)))  # noqa: E731
    assert ce(x_adv) < ce(x)


def _bump_data(n=200, seed=0):
    # Class = where a smooth vertical bar sits (column 2 or 5, +-0.5): a
    # spatial problem that a shift of ~1.5 pixels flips, learnable in seconds.
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    centre = np.where(y == 0, 2.0, 5.0) + rng.uniform(-0.5, 0.5, n)
    profile = np.exp(-((np.arange(8)[None, :] - centre[:, None]) ** 2) / 2.0)
    x = 0.9 * np.broadcast_to(profile[:, None, :, None], (n, 8, 8, 1)) + 0.1 * rng.rand(n, 8, 8, 1)
    return np.clip(x, 0, 1).astype("float32"), y.astype("int64")


def test_undefended_model_falls_to_a_large_flow_bound():
    x, y = _bump_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, batch_size=50, verbose=0)
    accuracy = lambda v: np.mean(np.argmax(model.predict(v, verbose=0), -1) == y)  # noqa: E731
    assert accuracy(x) > 0.95
    assert accuracy(StAdv(eps=3.0, steps=3)(model, x, y).numpy()) < 0.05
    # A sub-pixel bound barely moves it: the bound is what limits the attack.
    assert accuracy(StAdv(eps=0.25, steps=3)(model, x, y).numpy()) > 0.9


def test_config_round_trips_and_records_the_bound_and_tau():
    attack = StAdv(eps=0.75, tau=0.1, steps=7)
    config = attack.get_config()
    assert config["eps"] == 0.75 and config["tau"] == 0.1 and config["norm"] == "flow"
    assert config["step_size"] == pytest.approx(2.5 * 0.75 / 7)
    assert StAdv.from_config(config) == attack
    assert registry.from_config(config) == attack
    assert registry.build("stadv", 0.75, tau=0.1, steps=7) == attack
    default = StAdv()
    assert default.eps == pytest.approx(0.3 / 64) and default.tau == 0.05 and default.name == "stadv"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"eps": 0.0}, ValueError),
        ({"eps": -1.0}, ValueError),
        ({"eps": float("inf")}, ValueError),
        ({"eps": "0.3/64"}, TypeError),
        ({"norm": "linf"}, ValueError),
        ({"tau": -0.1}, ValueError),
        ({"tau": None}, TypeError),
        ({"steps": 0}, ValueError),
        ({"steps": 2.0}, ValueError),
        ({"step_size": 0.0}, ValueError),
        ({"loss": "dlr"}, ValueError),
        ({"init": "gaussian"}, ValueError),
        ({"select": "first"}, ValueError),
        ({"bn": "train"}, ValueError),
        ({"targeted": "yes"}, TypeError),
    ],
)
def test_bad_parameters_raise(kwargs, error):
    with pytest.raises(error, match="Received"):
        StAdv(**kwargs)


def test_bad_inputs_raise():
    model = helpers.tiny_classifier()
    x, y, s = helpers.toy_data()
    attack = StAdv(eps=0.5, steps=1)
    with pytest.raises(TypeError, match="x.dtype=uint8"):
        attack(model, (x * 255).astype("uint8"), y, s)
    with pytest.raises(ValueError, match="rank 4"):
        attack(model, x[0], y, s)
    with pytest.raises(ValueError, match="flow.shape"):
        warp(x, np.zeros(x.shape[:3] + (3,), "float32"))
