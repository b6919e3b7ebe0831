import keras
import numpy as np
import pytest

from tests.models import helpers
from tfrobust.models import preact_resnet18


def test_forward_gradients_and_parameter_count():
    model = preact_resnet18(num_classes=10, mean=0.5, std=0.25)
    helpers.run_model_test(model, (32, 32, 3), 10, roundtrip=False)
    # Wong et al.'s PreActResNet18 (PyTorch) has 11,172,170 parameters; Keras
    # also counts the BatchNorm moving mean and variance (2 x 3,904 values).
    bn_channels = sum(l.moving_mean.shape[0] for l in model.layers
                      if isinstance(l, keras.layers.BatchNormalization))
    assert bn_channels == 3_904
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 11_172_170
    assert model.count_params() == 11_172_170 + 2 * 3_904


def test_structure_and_batch_norm_factory():
    made = []

    def bn(name):
        made.append(name)
        return keras.layers.BatchNormalization(name=name)

    model = preact_resnet18(input_shape=(16, 16, 3), num_classes=5, batch_norm=bn)
    assert len(made) == 8 * 2 + 1  # 2 per block and the final BN
    projections = [l.name for l in model.layers if l.name.endswith("_proj")]
    assert projections == ["s2b1_proj", "s3b1_proj", "s4b1_proj"]
    assert model.get_layer("s4b2_add").output.shape[1:] == (2, 2, 512)
    assert model.output_shape == (None, 5)


@pytest.mark.slow
def test_saves_and_loads(tmp_path):
    helpers.run_model_test(preact_resnet18(num_classes=100), (32, 32, 3), 100, tmp_path)
