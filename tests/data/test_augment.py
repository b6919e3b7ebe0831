import numpy as np
import pytest
import tensorflow as tf

from tfrobust.data import augment


def _params(seed, **kw):
    kw = {"image_shape": (32, 32, 3), "pad": 4, "flip": True, "cutout": 8, **kw}
    return {k: int(v) for k, v in augment.sample(tf.constant(seed, tf.int32), **kw).items()}


def test_sample_is_a_function_of_the_seed_and_covers_its_range():
    draws = [_params([i, 7]) for i in range(200)]
    assert draws == [_params([i, 7]) for i in range(200)]
    for key, values in (("dy", range(9)), ("dx", range(9)), ("flip", range(2)),
                        ("cy", range(32)), ("cx", range(32))):
        seen = {d[key] for d in draws}
        assert seen <= set(values), (key, seen)
        assert len(seen) > 0.8 * len(values), (key, seen)
    # Different seeds give different parameters; cy and cx are not tied together.
    assert len({tuple(d.values()) for d in draws}) > 190
    assert sum(d["cy"] == d["cx"] for d in draws) < 30


def test_sample_returns_int32_scalars_and_zeros_when_disabled():
    p = augment.sample(tf.constant([1, 2]), (6, 6, 1), pad=0, flip=False, cutout=0)
    assert set(p) == {"dy", "dx", "flip", "cy", "cx"}
    for v in p.values():
        assert v.dtype == tf.int32 and v.shape == () and int(v) == 0


def test_apply_crop_flip_cutout_against_numpy():
    img = np.random.RandomState(0).rand(6, 6, 1).astype("float32")
    params = {"dy": tf.constant(1), "dx": tf.constant(3), "flip": tf.constant(1),
              "cy": tf.constant(0), "cx": tf.constant(5)}
    out = augment.apply(tf.constant(img), params, pad=2, cutout=2).numpy()
    padded = np.pad(img, [(2, 2), (2, 2), (0, 0)])
    expected = padded[1:7, 3:9][:, ::-1].copy()
    expected[0:1, 4:6] = 0  # rows -1..0, cols 4..5: clipped at the top border
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("cy, cx, rows, cols", [(3, 3, (2, 5), (2, 5)), (5, 0, (4, 6), (0, 2)), (0, 5, (0, 2), (4, 6))])
def test_cutout_square_is_centred_and_clipped(cy, cx, rows, cols):
    img = np.ones((6, 6, 2), "float32")
    params = {"dy": tf.constant(0), "dx": tf.constant(0), "flip": tf.constant(0),
              "cy": tf.constant(cy), "cx": tf.constant(cx)}
    out = augment.apply(tf.constant(img), params, pad=0, cutout=3).numpy()
    expected = img.copy()
    expected[rows[0]:rows[1], cols[0]:cols[1]] = 0
    np.testing.assert_array_equal(out, expected)


def test_no_augmentation_when_disabled_and_works_in_tf_function():
    img = tf.constant(np.random.RandomState(0).rand(6, 6, 1).astype("float32"))
    p = augment.sample(tf.constant([1, 2]), (6, 6, 1), pad=0, flip=False, cutout=0)
    np.testing.assert_array_equal(augment.apply(img, p, pad=0, cutout=0).numpy(), img.numpy())
    fn = tf.function(lambda x, s: augment.apply(x, augment.sample(s, (6, 6, 1), pad=2, cutout=2), pad=2, cutout=2))
    s = tf.constant([4, 5])
    eager = augment.apply(img, augment.sample(s, (6, 6, 1), pad=2, cutout=2), pad=2, cutout=2)
    np.testing.assert_array_equal(fn(img, s).numpy(), eager.numpy())


@pytest.mark.parametrize("kwargs, match", [({"pad": -1}, "pad=-1"), ({"cutout": 2.5}, "cutout=2.5")])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        augment.sample(tf.constant([0, 0]), (8, 8, 1), **kwargs)
