import numpy as np
import pytest
import tensorflow as tf

from tfrobust.evaluation.ssim import mean_ssim_distance, ssim_distance, window_size


def _images(shape, seed=0):
    return np.random.RandomState(seed).rand(*shape).astype("float32")


def _noisy(x, scale, seed=1):
    rng = np.random.RandomState(seed)
    return np.clip(x + scale * rng.randn(*x.shape), 0, 1).astype("float32")


@pytest.mark.parametrize("shape", [(4, 8, 8, 1), (3, 32, 32, 3), (2, 28, 28, 1)])
def test_identical_images_are_at_distance_zero(shape):
    x = _images(shape)
    d = ssim_distance(x, x).numpy()
    assert d.shape == (shape[0],)
    np.testing.assert_allclose(d, 0.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 8, 8, 1), (4, 28, 28, 1), (3, 32, 32, 3)])
def test_more_noise_is_farther_and_the_distance_is_symmetric(shape):
    x = _images(shape)
    near, far = _noisy(x, 0.02), _noisy(x, 0.2)
    d_near, d_far = ssim_distance(x, near).numpy(), ssim_distance(x, far).numpy()
    assert np.all(d_near > 0) and np.all(d_near < d_far)
    np.testing.assert_allclose(ssim_distance(far, x).numpy(), d_far, rtol=1e-5)


def test_values_lie_in_zero_two_even_for_anticorrelated_images():
    # x against 1 - x has negative covariance, so SSIM < 0 and 1-SSIM > 1.
    x = _images((4, 16, 16, 3))
    d = ssim_distance(x, 1.0 - x).numpy()
    assert np.all(d > 1.0) and np.all(d <= 2.0)
    for y in (_noisy(x, 0.5), np.zeros_like(x), np.ones_like(x)):
        d = ssim_distance(x, y).numpy()
        assert np.all((d >= 0) & (d <= 2))


@pytest.mark.parametrize("size", [8, 16])
def test_constant_images_match_the_closed_form(size):
    # For constant images a and b the variances and covariance vanish, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 1)^2, whatever
    # the window: (0.24 + 1e-4) / (0.40 + 1e-4) = 0.6000999..., 1-SSIM = 0.3999.
    a, b = 0.2, 0.6
    x = tf.fill([1, size, size, 1], a)
    y = tf.fill([1, size, size, 1], b)
    c1 = 0.01**2
    expected = 1 - (2 * a * b + c1) / (a * a + b * b + c1)
    assert expected == pytest.approx(0.39990002, abs=1e-7)
    # Variances come out as E[x^2] - E[x]^2 in float32: ~1e-5 of rounding
    # in the contrast term.
    assert float(ssim_distance(x, y)[0]) == pytest.approx(expected, abs=2e-4)


def test_channels_are_averaged():
    # Channel 0 identical (SSIM 1), channel 1 constant a vs b: the result is
    # the mean of the two channels' 1-SSIM.
    x = _images((2, 16, 16, 1))
    a = np.full_like(x, 0.2)
    b = np.full_like(x, 0.6)
    two = ssim_distance(np.concatenate([x, a], -1), np.concatenate([x, b], -1)).numpy()
    one = ssim_distance(a, b).numpy()
    np.testing.assert_allclose(two, one / 2, rtol=1e-4)


def test_window_shrinks_to_an_odd_size_on_small_images():
    assert window_size(32, 32) == 11
    assert window_size(11, 11) == 11
    assert window_size(8, 8) == 7
    assert window_size(10, 28) == 9
    assert window_size(1, 1) == 1


def test_matches_tf_image_ssim_with_the_standard_window():
    x = _images((3, 32, 32, 3))
    y = _noisy(x, 0.1)
    want = 1.0 - tf.image.ssim(x, y, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)
    np.testing.assert_allclose(ssim_distance(x, y).numpy(), want.numpy(), atol=1e-6)


def test_mean_and_compiled_versions_agree():
    x = _images((4, 8, 8, 1))
    y = _noisy(x, 0.1)
    d = ssim_distance(x, y).numpy()
    assert float(mean_ssim_distance(x, y)) == pytest.approx(d.mean(), rel=1e-6)
    for jit in (False, True):
        fn = tf.function(ssim_distance, jit_compile=jit,
                         input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)] * 2)
        np.testing.assert_allclose(fn(x, y).numpy(), d, atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="Received"):
        ssim_distance(_images((8, 8, 1)), _images((8, 8, 1)))
    with pytest.raises(ValueError, match="same shape"):
        ssim_distance(_images((2, 8, 8, 1)), _images((2, 16, 16, 1)))
