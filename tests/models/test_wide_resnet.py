import keras
import numpy as np
import pytest

from tests.models import helpers
from tfrobust.models import wide_resnet


@pytest.mark.parametrize(
    "depth, width, activation",
    [(10, 1, "relu"), (16, 1, "swish"), (10, 2, "swish")],
)
def test_contract(depth, width, activation, tmp_path):
    model = wide_resnet(depth, width, activation, mean=0.5, std=0.25)
    helpers.run_model_test(model, (32, 32, 3), 10, tmp_path)
    assert model.get_layer("final_act").activation is keras.activations.get(activation)
    assert model.get_layer("s3b1_conv1").filters == 64 * width


def test_structure():
    model = wide_resnet(16, 2)
    n = 2
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    # Stem, 2 per block, and projections where the width changes (all 3 stages, as 16 != 32).
    assert len(convs) == 1 + 2 * 3 * n + 3
    assert model.get_layer(f"s3b{n}_add").output.shape[1:] == (8, 8, 128)
    # k = 1: stage 1 keeps 16 filters, so its first block needs no projection.
    assert "s1b1_proj" not in [l.name for l in wide_resnet(10, 1).layers]


def _trainable_params(depth, width, num_classes=10, channels=3):
    """Counts the WRN's trainable parameters by hand, layer by layer."""
    n = (depth - 4) // 6
    total, prev = 9 * channels * 16, 16  # the bias-free 3x3 stem
    for stage, base in enumerate((16, 32, 64)):
        filters = base * width
        for block in range(n):
            # BN (gamma, beta) + 3x3 conv, twice, both bias-free.
            total += 2 * prev + 9 * prev * filters + 2 * filters + 9 * filters * filters
            if block == 0 and (stage > 0 or prev != filters):
                total += prev * filters  # the 1x1 projection shortcut
            prev = filters
    return total + 2 * prev + prev * num_classes + num_classes  # final BN and dense


@pytest.mark.parametrize("depth, width", [(16, 2), (28, 10)])  # WRN-28-10 builds in ~4 s
def test_parameter_count(depth, width):
    model = wide_resnet(depth, width)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == _trainable_params(depth, width)
    if (depth, width) == (28, 10):
        # Zagoruyko & Komodakis (Table 4): WRN-28-10 has 36.5M parameters.
        assert trainable == 36_479_194
        assert abs(model.count_params() - 36.5e6) / 36.5e6 < 0.01


def test_batch_norm_factory_is_used():
    made = []

    def bn(name):
        made.append(name)
        return keras.layers.BatchNormalization(name=name)

    wide_resnet(16, 1, batch_norm=bn)
    assert len(made) == 3 * 2 * 2 + 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 27}, "Received: depth=27$"),
        ({"depth": 4}, "Received: depth=4$"),
        ({"depth": 16, "width": 0}, "Received: width=0$"),
        ({"depth": 16, "activation": "gelu"}, "Received: activation='gelu'$"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wide_resnet(**kwargs)


def test_wrn_70_16_of_gowal_et_al_builds_and_runs():
    # Gowal et al. (arXiv 2110.09468) train WRN-70-16: 267M parameters.
    model = wide_resnet(70, 16, input_shape=(8, 8, 3))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == _trainable_params(70, 16)
    assert abs(model.count_params() - 266.9e6) / 266.9e6 < 0.001
    out = model(np.zeros((1, 8, 8, 3), "float32"), training=False)
    assert out.shape == (1, 10) and np.all(np.isfinite(out))
