import keras
import numpy as np
import pytest

from tfrobust.models import Normalize
from tfrobust.models.normalization import default_batch_norm


@pytest.mark.parametrize(
    "mean, std",
    [
        ([0.1, 0.2, 0.3], [0.5, 0.25, 2.0]),
        (0.5, 0.25),
        (np.array([0.4914, 0.4822, 0.4465]), 0.2),
        (0.5, None),
        (None, 2.0),
    ],
)
def test_matches_numpy(mean, std):
    x = np.random.RandomState(0).rand(2, 4, 4, 3).astype("float32")
    expected = (x - (0.0 if mean is None else np.asarray(mean))) / (1.0 if std is None else np.asarray(std))
    y = Normalize(mean, std)(x)
    assert y.dtype == "float32"
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)


def test_none_is_identity():
    x = np.random.RandomState(0).rand(2, 4, 4, 3).astype("float32")
    np.testing.assert_array_equal(Normalize()(x).numpy(), x)


def test_config_roundtrip_and_registered():
    layer = Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0], name="norm")
    config = layer.get_config()
    assert config["name"] == "norm" and config["mean"] == [0.1, 0.2, 0.3]
    x = np.random.RandomState(1).rand(2, 4, 4, 3).astype("float32")
    clone = Normalize.from_config(config)
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy())
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Normalize) and restored.std == [0.5, 0.25, 2.0]
    assert keras.saving.get_registered_name(Normalize) == "tfrobust>Normalize"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mean": 0.0, "std": 0.0}, ValueError, "std="),
        ({"mean": 0.0, "std": [1.0, -1.0, 1.0]}, ValueError, "std="),
        ({"mean": float("nan")}, ValueError, "mean=nan"),
        ({"mean": []}, ValueError, "mean="),
        ({"mean": "abc"}, TypeError, "mean='abc'"),
    ],
)
def test_bad_statistics(kwargs, error, match):
    with pytest.raises(error, match=match):
        Normalize(**kwargs)


def test_channel_count_mismatch():
    with pytest.raises(ValueError, match=r"one value per channel \(1\)"):
        Normalize([0.1, 0.2, 0.3], 1.0)(np.zeros((1, 2, 2, 1), "float32"))


def test_default_batch_norm_uses_pytorch_defaults():
    layer = default_batch_norm("bn")
    assert isinstance(layer, keras.layers.BatchNormalization)
    assert (layer.name, layer.momentum, layer.epsilon) == ("bn", 0.9, 1e-5)


def _pair(shape, seed=0):
    """A Keras BatchNorm and a LowPrecisionBatchNorm with the same (non-trivial) weights."""
    from tfrobust.models.normalization import LowPrecisionBatchNorm

    rng = np.random.RandomState(seed)
    keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    ours = LowPrecisionBatchNorm(momentum=0.9, epsilon=1e-5)
    for layer in (keras_bn, ours):
        layer.build(shape)
    weights = [rng.uniform(0.5, 1.5, shape[-1]), rng.normal(0, 0.5, shape[-1]), rng.normal(0, 0.5, shape[-1]),
               rng.uniform(0.5, 2.0, shape[-1])]
    for layer in (keras_bn, ours):
        layer.set_weights([w.astype("float32") for w in weights])
    return keras_bn, ours


@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (7, 3)])
def test_low_precision_batch_norm_computes_what_keras_computes_in_float32(shape):
    import tensorflow as tf

    x = tf.constant(np.random.RandomState(1).normal(1.0, 2.0, shape).astype("float32"))
    weights = tf.constant(np.sin(np.arange(np.prod(shape))).reshape(shape).astype("float32"))
    keras_bn, ours = _pair(shape)
    for training in (False, True):
        outs, grads = [], []
        for layer in (keras_bn, ours):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
                loss = tf.reduce_sum(y * weights)
            outs.append(y.numpy())
            grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])])
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
        for ga, gb in zip(*grads):
            np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-4)
    # One training call each moved the moving statistics the same way (biased variance, momentum 0.9).
    for a, b in zip(keras_bn.get_weights()[2:], ours.get_weights()[2:]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.get_weights()[3], _pair(shape)[1].get_weights()[3])  # they did move


def test_low_precision_batch_norm_stays_in_bfloat16_and_is_the_default_there():
    import tensorflow as tf

    from tfrobust.models.normalization import LowPrecisionBatchNorm

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = default_batch_norm("bn")
        reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    finally:
        keras.config.set_dtype_policy(previous)
    assert type(layer) is LowPrecisionBatchNorm and (layer.momentum, layer.epsilon) == (0.9, 1e-5)
    assert type(default_batch_norm("bn")) is keras.layers.BatchNormalization  # float32: Keras' own
    x = tf.constant(np.random.RandomState(2).normal(0.0, 1.0, (8, 4, 4, 5)).astype("float32"))
    for training in (True, False):
        y, expected = layer(x, training=training), reference(x, training=training)
        assert y.dtype == tf.bfloat16 and layer.moving_mean.dtype == "float32"
        np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy(),
                                   atol=0.05, rtol=0.02)
    np.testing.assert_allclose(layer.get_weights()[2], reference.get_weights()[2], atol=1e-2)


def test_low_precision_batch_norm_saves_and_loads(tmp_path):
    from tfrobust.models.normalization import LowPrecisionBatchNorm

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, LowPrecisionBatchNorm(momentum=0.9, epsilon=1e-5, name="bn")(inputs))
    model.get_layer("bn").set_weights([np.full(3, v, "float32") for v in (2.0, 0.5, 0.1, 3.0)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("bn")) is LowPrecisionBatchNorm
    x = np.random.RandomState(3).rand(2, 4, 4, 3).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
