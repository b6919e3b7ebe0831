import sys

import keras
import numpy as np
import pytest

from tfrobust import models
from tfrobust.models.bottleneck_resnet import LAYOUTS, bottleneck_resnet


@pytest.mark.parametrize("depth", sorted(LAYOUTS))
def test_layouts_have_the_named_depth(depth):
    # Depth counts the 3 convolutions per block, the stem and the classifier.
    assert 3 * sum(LAYOUTS[depth]) + 2 == depth


def test_resnet50_has_the_papers_parameter_count():
    model = bottleneck_resnet(50, input_shape=(224, 224, 3), num_classes=1000)
    assert model.count_params() == pytest.approx(25.56e6, rel=0.005)


def test_depth_638_builds_and_runs_under_the_default_recursion_limit():
    limit = sys.getrecursionlimit()
    model = bottleneck_resnet(638, input_shape=(8, 8, 3), num_classes=4, width=1, stem="cifar")
    assert sys.getrecursionlimit() == limit  # built without raising the limit
    assert len([l for l in model.layers if l.__class__.__name__ == "Bottleneck"]) == 212
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype("float32")
    logits = model(x, training=False)
    assert logits.shape == (2, 4) and np.all(np.isfinite(logits))
    # Zero-initialised last BN gammas: every block starts as the identity, so
    # the logits are finite and moderate even 212 blocks deep.
    assert np.abs(logits).max() < 1e3


def test_small_bottleneck_resnet_trains_and_saves(tmp_path):
    model = models.build("resnet50", (16, 16, 3), 3, width=2, stem="cifar")
    x = np.random.RandomState(0).rand(8, 16, 16, 3).astype("float32")
    y = np.arange(8) % 3
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "r50.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_bad_depth_raises():
    with pytest.raises(ValueError, match="depth=34"):
        bottleneck_resnet(34)


def test_bottleneck_resnet_with_mixbn_routes_both_branches_and_saves(tmp_path):
    from tfrobust.attacks import PGD
    from tfrobust.models import mixbn
    from tfrobust.training import AdversarialModel

    classifier = models.build("resnet50", (8, 8, 3), 3, width=1, stem="cifar",
                              batch_norm=mixbn.mix_batch_norm("clean"))
    layers = mixbn.mixbn_layers(classifier)
    assert len(layers) == 1 + 16 * 3 + 4  # stem, 3 per block, 4 projections
    assert mixbn.inference_branch(classifier) == "clean"
    model = AdversarialModel(classifier, attack=PGD(0.03, steps=1), clean_ratio=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.RandomState(0).rand(8, 8, 8, 3).astype("float32")
    model.fit(x, np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    first = layers[0]
    assert not np.allclose(first.clean.moving_mean.numpy(), first.adv.moving_mean.numpy())
    path = str(tmp_path / "m.keras")
    classifier.save(path)
    loaded = keras.models.load_model(path)
    assert mixbn.inference_branch(loaded) == "clean"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="mix_batch_norm"):
        models.build("resnet50", (8, 8, 3), 3, width=1, stem="cifar", batch_norm=lambda name: None)


@pytest.mark.parametrize("mix", [False, True])
def test_bottleneck_resnet_with_synchronized_batchnorm_saves_the_flag(mix, tmp_path):
    from tfrobust.models import mixbn, normalization

    def flags(model):
        return [layer.synchronized for layer in model._flatten_layers(recursive=True)
                if isinstance(layer, keras.layers.BatchNormalization)]

    factory = mixbn.mix_batch_norm("adv", synchronized=True) if mix else normalization.synchronized_batch_norm
    classifier = models.build("resnet50", (8, 8, 3), 3, width=1, stem="cifar", batch_norm=factory)
    # stem, 3 per block, 4 projections; two BatchNorms in each MixBN layer.
    assert len(flags(classifier)) == (1 + 16 * 3 + 4) * (2 if mix else 1) and all(flags(classifier))
    assert not any(flags(models.build("resnet50", (8, 8, 3), 3, width=1, stem="cifar",
                                      batch_norm=mixbn.mix_batch_norm("adv") if mix else None)))
    classifier.save(tmp_path / "m.keras")
    assert all(flags(keras.models.load_model(tmp_path / "m.keras")))
