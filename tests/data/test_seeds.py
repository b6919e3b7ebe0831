import numpy as np
import tensorflow as tf

from tfrobust.data import seeds


def _batch_seeds(n, offset=0):
    return tf.stack([seeds.element_seed(0, 0, i) for i in range(offset, offset + n)])


def test_element_seeds_differ_by_element_epoch_and_global_seed():
    s = {(g, e, i): tuple(seeds.element_seed(g, e, i).numpy()) for g in (0, 1) for e in (0, 1) for i in (0, 1)}
    assert len(set(s.values())) == len(s)
    np.testing.assert_array_equal(seeds.element_seed(3, 2, 7), seeds.element_seed(3, 2, 7))


def test_uniform_row_depends_only_on_its_seed():
    full = seeds.uniform(_batch_seeds(8), (4, 4, 1)).numpy()
    part = seeds.uniform(_batch_seeds(3, offset=5), (4, 4, 1)).numpy()
    np.testing.assert_array_equal(part, full[5:])
    assert not np.array_equal(full[0], full[1])


def test_uniform_and_normal_are_identical_under_xla():
    s = _batch_seeds(16)
    for fn in (seeds.uniform, seeds.normal):
        eager = fn(s, (8, 8, 3)).numpy()
        xla = tf.function(lambda v, fn=fn: fn(v, (8, 8, 3)), jit_compile=True)(s).numpy()
        np.testing.assert_allclose(xla, eager, atol=1e-6)


def test_uniform_statistics():
    u = seeds.uniform(_batch_seeds(64), (32, 32)).numpy()
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - (1 / 12) ** 0.5) < 0.01
    z = seeds.normal(_batch_seeds(64), (32, 32)).numpy()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_derive_separates_purposes():
    s = seeds.element_seed(0, 0, 0)
    a, b = seeds.derive(s, seeds.AUGMENT_SALT), seeds.derive(s, seeds.ATTACK_SALT)
    assert not np.array_equal(a, b)
    assert a.dtype == tf.int32 and a.shape == (2,)
