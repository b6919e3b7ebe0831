import numpy as np
import pytest

from tests.models import helpers
from tfrobust.models import Normalize, madry_cnn, wong_cnn


@pytest.mark.parametrize(
    "builder, kwargs, params",
    [
        # Wong et al.: 16*(4*4*1)+16 + 32*(4*4*16)+32 + 100*(7*7*32)+100 + 10*100+10.
        (wong_cnn, {}, 166_406),
        (wong_cnn, {"width": 2}, 32 * 16 + 32 + 64 * 16 * 32 + 64 + 200 * 49 * 64 + 200 + 10 * 200 + 10),
        (wong_cnn, {"init": "torch"}, 166_406),
        # Madry et al.: 32*25+32 + 64*25*32+64 + 1024*(7*7*64)+1024 + 10*1024+10.
        (madry_cnn, {}, 3_274_634),
    ],
)
def test_contract_and_parameter_count(builder, kwargs, params, tmp_path):
    model = builder(mean=0.1307, std=0.3081, **kwargs)
    helpers.run_model_test(model, (28, 28, 1), 10, tmp_path)
    assert model.count_params() == params
    assert isinstance(model.get_layer("normalize"), Normalize)
    assert model.get_layer("normalize").mean == [0.1307]


@pytest.mark.parametrize("builder", [wong_cnn, madry_cnn])
def test_other_shapes(builder, tmp_path):
    model = builder(input_shape=(32, 32, 3), num_classes=7)
    helpers.run_model_test(model, (32, 32, 3), 7, tmp_path)


def test_wong_cnn_geometry():
    model = wong_cnn()
    # 28 -> 14 -> 7, with PyTorch's symmetric padding of 1.
    assert model.get_layer("conv1").output.shape[1:] == (14, 14, 16)
    assert model.get_layer("conv2").output.shape[1:] == (7, 7, 32)
    assert model.get_layer("pad1").padding == ((1, 1), (1, 1))
    assert model.get_layer("logits").activation.__name__ == "linear"


def test_madry_cnn_geometry():
    model = madry_cnn()
    assert model.get_layer("pool2").output.shape[1:] == (7, 7, 64)
    assert model.get_layer("fc1").units == 1024


def test_torch_init_matches_pytorch_bounds():
    # PyTorch's Conv2d/Linear defaults bound weights and biases by 1/sqrt(fan_in).
    model = wong_cnn(init="torch")
    fan_in = {"conv1": 16, "conv2": 256, "fc1": 1568, "logits": 100}
    for name, fan in fan_in.items():
        kernel, bias = model.get_layer(name).weights
        bound = fan ** -0.5
        assert 0.9 * bound < np.abs(kernel.numpy()).max() <= bound
        assert 0.5 * bound < np.abs(bias.numpy()).max() <= bound


@pytest.mark.parametrize(
    "kwargs, match",
    [({"width": 0}, "width=0"), ({"width": 1.5}, "width=1.5"), ({"init": "xavier"}, "init='xavier'")],
)
def test_wong_cnn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wong_cnn(**kwargs)
