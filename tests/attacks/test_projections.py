import numpy as np
import pytest
import tensorflow as tf

from tfrobust.attacks import projections


def _l1_box_projection_by_bisection(x, v, eps):
    """The same projection found another way: bisection on the soft threshold, in float64."""
    out = []
    for xi, vi in zip(x.reshape(len(x), -1).astype(np.float64), v.reshape(len(v), -1).astype(np.float64)):
        room = np.where(vi > 0, 1.0 - xi, xi)
        norm = lambda lam: np.clip(np.abs(vi) - lam, 0.0, room).sum()  # noqa: E731
        lo, hi = 0.0, float(np.abs(vi).max())
        if norm(0.0) > eps:
            for _ in range(100):
                lo, hi = (lo, (lo + hi) / 2) if norm((lo + hi) / 2) <= eps else ((lo + hi) / 2, hi)
        else:
            hi = 0.0
        out.append(xi + np.sign(vi) * np.clip(np.abs(vi) - hi, 0.0, room))
    return np.array(out).reshape(x.shape)


def _cases(seed=0, batch=24):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, 6, 6, 3)).astype("float32")
    x[:4] = np.round(x[:4])  # pixels on the box's faces, where the room is 0 one way
    scale = rng.choice([0.003, 0.05, 0.5, 3.0], size=(batch, 1, 1, 1))
    v = (rng.normal(size=x.shape) * scale).astype("float32")
    v[4:6] = 0.0
    return x, v


@pytest.mark.parametrize("eps", [0.5, 2.0, 40.0])
def test_l1_project_is_the_euclidean_projection_onto_ball_and_box(eps):
    x, v = _cases()
    got = projections.l1_project(x + v, x, eps).numpy()
    np.testing.assert_allclose(got, _l1_box_projection_by_bisection(x, v, eps), atol=2e-6)
    l1 = np.abs(got - x).reshape(len(x), -1).sum(1)
    assert l1.max() <= eps * (1 + 1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_l1_project_satisfies_the_variational_inequality():
    # p is the projection of z onto a convex set C iff <z - p, q - p> <= 0 for every q in C;
    # the q are random points of the set (each a sparse move inside the box, scaled into the ball).
    x, v = _cases(seed=1)
    eps = 1.0
    z = x + v
    p = projections.l1_project(z, x, eps).numpy().astype(np.float64)
    rng = np.random.default_rng(2)
    for _ in range(20):
        q = rng.uniform(size=x.shape) * (rng.uniform(size=x.shape) < 0.1)
        q = x + (q - x) * (rng.uniform(size=x.shape) < 0.1)
        d = (q - x).reshape(len(x), -1)
        q = x + (d * np.minimum(1.0, eps / (np.abs(d).sum(1, keepdims=True) + 1e-12))).reshape(x.shape)
        inner = ((z - p) * (q - p)).reshape(len(x), -1).sum(1)
        assert inner.max() <= 1e-5, inner.max()


def test_l1_project_leaves_points_of_the_set_alone_and_compiles():
    x, v = _cases(seed=3)
    inside = projections.l1_project(x + v, x, 1.0)
    np.testing.assert_allclose(projections.l1_project(inside, x, 1.0).numpy(), inside.numpy(), atol=1e-6)
    # Coordinates the threshold removes come back exactly at x: the sparsity is exact.
    moved = np.abs(inside.numpy() - x) > 0
    assert moved.sum() < moved.size
    xla = tf.function(projections.l1_project, jit_compile=True)
    np.testing.assert_allclose(xla(x + v, x, 1.0).numpy(), inside.numpy(), atol=1e-6)


def test_distance_l1():
    x = np.zeros((2, 2, 2, 1), np.float32)
    a = x.copy()
    a[0, 0, 0, 0], a[0, 1, 1, 0], a[1, 0, 1, 0] = 0.25, -0.5, 1.0
    np.testing.assert_allclose(projections.distance(a, x, "l1").numpy(), [0.75, 1.0])
