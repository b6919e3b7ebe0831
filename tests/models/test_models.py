import keras
import numpy as np
import pytest

from tests.models import helpers
from tfrobust import models
from tfrobust.models import Normalize


@pytest.mark.parametrize(
    "name, shape, classes, kwargs, params",
    [
        ("wong_cnn", (28, 28, 1), 10, {}, 166_406),
        ("wong_cnn", (28, 28, 1), 10, {"width": 2}, None),
        ("madry_cnn", (28, 28, 1), 10, {}, 3_274_634),
        ("resnet20", (32, 32, 3), 10, {}, 274_042),
        ("resnet32", (32, 32, 3), 100, {}, None),
        ("preact_resnet18", (32, 32, 3), 10, {}, 11_179_978),
        ("wrn-16-1", (32, 32, 3), 10, {"activation": "swish"}, None),
    ],
)
def test_model_contract(name, shape, classes, kwargs, params, tmp_path):
    model = models.build(name, shape, classes, mean=0.5, std=0.25, **kwargs)
    helpers.run_model_test(model, shape, classes, tmp_path)
    if params is not None:
        assert model.count_params() == params


def test_published_parameter_counts():
    # He et al.: ResNet-20 ~0.27M; Zagoruyko & Komodakis: WRN-28-10 36.5M.
    assert abs(models.build("resnet20", (32, 32, 3), 10).count_params() - 0.27e6) / 0.27e6 < 0.05
    assert abs(models.build("wrn-28-10", (32, 32, 3), 10).count_params() - 36.5e6) / 36.5e6 < 0.01


def test_normalize_matches_numpy_and_roundtrips():
    x = np.random.RandomState(0).rand(2, 4, 4, 3).astype("float32")
    layer = Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    np.testing.assert_allclose(layer(x).numpy(), (x - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0], rtol=1e-6)
    clone = Normalize.from_config(layer.get_config())
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy())
    np.testing.assert_array_equal(Normalize()(x).numpy(), x)
    with pytest.raises(ValueError, match="std"):
        Normalize(0.0, 0.0)


def test_normalisation_is_inside_the_model():
    a = models.build("wong_cnn", (28, 28, 1), 10, mean=0.1307, std=0.3081)
    assert isinstance(a.get_layer("normalize"), Normalize)
    assert a.get_layer("normalize").mean == [0.1307]


def test_batch_norm_factory_is_used():
    made = []

    def bn(name):
        made.append(name)
        return keras.layers.BatchNormalization(name=name)

    models.build("resnet20", (32, 32, 3), 10, batch_norm=bn)
    assert len(made) == 1 + 9 * 2 + 2  # stem, 2 per block, 2 projection shortcuts


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("resnet21", {}, "Unknown model"),
        ("vgg16", {}, "name='vgg16'"),
        ("wrn-27-10", {}, "depth=27"),
        ("wrn-16-1", {"activation": "gelu"}, "activation='gelu'"),
        ("wong_cnn", {"width": 0}, "width=0"),
    ],
)
def test_bad_names_and_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, (32, 32, 3), 10, **kwargs)


def test_bad_resnet_depth():
    with pytest.raises(ValueError, match="Received: depth=21"):
        models.cifar_resnet(21)


def test_torch_init_matches_pytorch_bounds():
    # PyTorch's Conv2d/Linear defaults bound weights and biases by 1/sqrt(fan_in).
    model = models.build("wong_cnn", (28, 28, 1), 10, init="torch")
    fan_in = {"conv1": 16, "conv2": 256, "fc1": 1568, "logits": 100}
    for name, fan in fan_in.items():
        kernel, bias = model.get_layer(name).weights
        bound = fan ** -0.5
        assert np.abs(kernel.numpy()).max() <= bound and np.abs(kernel.numpy()).max() > 0.9 * bound
        assert np.abs(bias.numpy()).max() <= bound and np.abs(bias.numpy()).max() > 0.5 * bound
    with pytest.raises(ValueError, match="init='xavier'"):
        models.build("wong_cnn", (28, 28, 1), 10, init="xavier")
