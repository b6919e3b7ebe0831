import numpy as np
import tensorflow as tf

from tfrobust.data import augment


def test_same_seed_same_params_and_params_in_range():
    seen = set()
    for i in range(50):
        p = augment.sample(tf.constant([i, 7]), (32, 32, 3), pad=4, flip=True, cutout=8)
        q = augment.sample(tf.constant([i, 7]), (32, 32, 3), pad=4, flip=True, cutout=8)
        p = {k: int(v) for k, v in p.items()}
        assert p == {k: int(v) for k, v in q.items()}
        assert 0 <= p["dy"] <= 8 and 0 <= p["dx"] <= 8 and p["flip"] in (0, 1)
        assert 0 <= p["cy"] < 32 and 0 <= p["cx"] < 32
        seen.add(tuple(p.values()))
    assert len(seen) > 40


def test_apply_crop_flip_cutout_against_numpy():
    img = np.random.RandomState(0).rand(6, 6, 1).astype("float32")
    params = {"dy": tf.constant(1), "dx": tf.constant(3), "flip": tf.constant(1),
              "cy": tf.constant(0), "cx": tf.constant(5)}
    out = augment.apply(tf.constant(img), params, pad=2, cutout=2).numpy()
    padded = np.pad(img, [(2, 2), (2, 2), (0, 0)])
    expected = padded[1:7, 3:9][:, ::-1].copy()
    expected[0:1, 4:6] = 0  # a 2x2 square at (0, 5), clipped at the top border
    np.testing.assert_array_equal(out, expected)


def test_no_augmentation_when_disabled():
    img = np.random.RandomState(0).rand(6, 6, 1).astype("float32")
    p = augment.sample(tf.constant([1, 2]), (6, 6, 1), pad=0, flip=False, cutout=0)
    np.testing.assert_array_equal(augment.apply(tf.constant(img), p, pad=0, cutout=0).numpy(), img)
