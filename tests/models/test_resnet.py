import keras
import pytest

from tests.models import helpers
from tfrobust.models import cifar_resnet


@pytest.fixture(scope="module")
def resnet20():
    # Built once for the read-only structure checks.
    return cifar_resnet(20)


@pytest.mark.parametrize("depth, num_classes", [(20, 10), (32, 100)])
def test_contract_and_structure(depth, num_classes, tmp_path):
    model = cifar_resnet(depth, num_classes=num_classes, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26])
    helpers.run_model_test(model, (32, 32, 3), num_classes, tmp_path)
    assert model.name == f"resnet{depth}"
    n = (depth - 2) // 6
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    # Stem, 2 per block, and a projection where stages 2 and 3 begin.
    assert len(convs) == 1 + 2 * 3 * n + 2
    assert [l.name for l in convs if l.kernel_size == (1, 1)] == ["s2b1_proj", "s3b1_proj"]
    assert model.get_layer(f"s1b{n}_out").output.shape[1:] == (32, 32, 16)
    assert model.get_layer("s2b1_out").output.shape[1:] == (16, 16, 32)
    assert model.get_layer(f"s3b{n}_out").output.shape[1:] == (8, 8, 64)
    # PyTorch's symmetric padding for the strided 3x3 convolutions.
    assert model.get_layer("s2b1_conv1_pad").padding == ((1, 1), (1, 1))


def test_resnet20_parameter_count(resnet20):
    # He et al. (Table 6): ResNet-20 has 0.27M parameters.
    params = resnet20.count_params()
    assert abs(params - 0.27e6) / 0.27e6 < 0.05, params


def test_batch_norm_factory_is_used():
    made = []

    def bn(name):
        made.append(name)
        return keras.layers.BatchNormalization(momentum=0.5, name=name)

    model = cifar_resnet(20, batch_norm=bn)
    assert len(made) == 1 + 9 * 2 + 2  # stem, 2 per block, 2 projection shortcuts
    assert "s2b1_proj_bn" in made and len(set(made)) == len(made)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert {l.momentum for l in bns} == {0.5}


def test_default_batch_norm(resnet20):
    bns = [l for l in resnet20.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and {(l.momentum, l.epsilon) for l in bns} == {(0.9, 1e-5)}


@pytest.mark.parametrize("depth", [21, 15, 2, 0, "20", 20.0])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"Received: depth=" + repr(depth).replace(".", r"\.") + "$"):
        cifar_resnet(depth)
