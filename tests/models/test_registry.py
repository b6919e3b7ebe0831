import pytest

from tests.models import helpers
from tfrobust import models


@pytest.mark.parametrize(
    "name, shape, classes, kwargs, expected_model_name",
    [
        ("wong_cnn", (28, 28, 1), 10, {"width": 2}, "wong_cnn_w2"),
        ("madry_cnn", (28, 28, 1), 10, {}, "madry_cnn"),
        ("wrn-10-1", (32, 32, 3), 100, {"activation": "swish"}, "wrn_10_1_swish"),
    ],
)
def test_build_passes_everything_through(name, shape, classes, kwargs, expected_model_name):
    model = models.build(name, shape, classes, mean=0.5, std=0.25, **kwargs)
    assert model.name == expected_model_name
    assert model.get_layer("normalize").mean == [0.5] and model.get_layer("normalize").std == [0.25]
    helpers.run_model_test(model, shape, classes, roundtrip=False)


@pytest.fixture
def stubbed(monkeypatch):
    """Replaces every builder with one that records its arguments."""
    calls = []
    for builder in ("wong_cnn", "madry_cnn", "cifar_resnet", "preact_resnet18", "wide_resnet",
                    "bottleneck_resnet"):
        monkeypatch.setattr(models, builder,
                            lambda *args, _b=builder, **kwargs: calls.append((_b, args, kwargs)))
    return calls


@pytest.mark.parametrize(
    "name, builder, args",
    [
        ("wong_cnn", "wong_cnn", ()),
        ("madry_cnn", "madry_cnn", ()),
        ("resnet20", "cifar_resnet", (20,)),
        ("resnet32", "cifar_resnet", (32,)),
        ("resnet44", "cifar_resnet", (44,)),
        ("resnet56", "cifar_resnet", (56,)),
        ("resnet110", "cifar_resnet", (110,)),
        ("resnet50", "bottleneck_resnet", (50,)),
        ("resnet638", "bottleneck_resnet", (638,)),
        ("preact_resnet18", "preact_resnet18", ()),
        ("wrn-28-10", "wide_resnet", (28, 10)),
        ("wrn-70-16", "wide_resnet", (70, 16)),
    ],
)
def test_dispatch(name, builder, args, stubbed):
    models.build(name, [32, 32, 3], 10, mean=0.5, extra="passed")
    expected = dict(input_shape=(32, 32, 3), num_classes=10, mean=0.5, std=None, extra="passed")
    assert stubbed == [(builder, args, expected)]


def test_available_names_all_build(stubbed):
    names = models.available()
    concrete = [n for n in names if "<" not in n]
    assert set(concrete) == {"wong_cnn", "madry_cnn", "resnet20", "resnet32", "resnet44", "resnet56",
                             "resnet110", "preact_resnet18", "resnet50", "resnet101", "resnet152",
                             "resnet200", "resnet638"}
    assert "wrn-<depth>-<width>" in names
    for name in concrete:
        models.build(name, (32, 32, 3), 10)
    assert len(stubbed) == len(concrete)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("resnet21", {}, r"Unknown model.*resnet110.*Received: name='resnet21'$"),
        ("vgg16", {}, r"wrn-<depth>-<width>.*Received: name='vgg16'$"),
        ("WONG_CNN", {}, r"Received: name='WONG_CNN'$"),
        ("wrn-28", {}, r"Received: name='wrn-28'$"),
        ("wrn-27-10", {}, r"Received: depth=27$"),
        ("wrn-16-1", {"activation": "gelu"}, r"Received: activation='gelu'$"),
        ("wong_cnn", {"width": 0}, r"Received: width=0$"),
    ],
)
def test_bad_names_and_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, (32, 32, 3), 10, **kwargs)
