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
