import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust import models
from tfrobust.attacks import FGSM, PGD
from tfrobust.models import mixbn
from tfrobust.training import AdversarialModel, adversarial_model

MOMENTUM = 0.9


def _mix_model(branch="adv"):
    # MixBN right on the pixels, so each branch's statistics are plain means
    # of the images it saw.
    inputs = keras.Input((4, 4, 2))
    h = mixbn.MixBatchNormalization(branch=branch, momentum=MOMENTUM, name="mix")(inputs)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(h))
    return keras.Model(inputs, outputs)


def _set_stats(layer, clean, adv):
    for bn, (mean, var, gamma, beta) in ((layer.clean, clean), (layer.adv, adv)):
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, mean, "float32"))
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, var, "float32"))
        bn.gamma.assign(np.full(bn.gamma.shape, gamma, "float32"))
        bn.beta.assign(np.full(bn.beta.shape, beta, "float32"))


def _data(n=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 4, 4, 2).astype("float32")
    y = rng.randint(0, 3, n).astype("int64")
    s = rng.randint(0, 2**31 - 1, (n, 2)).astype("int32")
    return x, y, s


def test_branches_have_separate_statistics_and_route_selects_one():
    model = _mix_model()
    layer = model.get_layer("mix")
    _set_stats(layer, clean=(1.0, 4.0, 1.0, 0.0), adv=(0.0, 1.0, 2.0, 0.5))
    x = np.random.RandomState(0).rand(2, 4, 4, 2).astype("float32")
    with mixbn.route(model, "clean"):
        out_clean = layer(x, training=False).numpy()
    out_default = layer(x, training=False).numpy()
    np.testing.assert_allclose(out_clean, (x - 1.0) / np.sqrt(4.0 + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(out_default, 2.0 * x / np.sqrt(1.0 + 1e-5) + 0.5, rtol=1e-5)
    assert layer.active_branch() == "adv"  # the route ended with its block
    assert len(layer.trainable_weights) == 4 and len(layer.non_trainable_weights) == 4


def test_mixed_step_updates_each_branch_from_its_own_part_only():
    eps = 0.05
    model = AdversarialModel(_mix_model(), attack=PGD(eps, steps=2), clean_ratio=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y, s = _data()
    model.train_on_batch({"image": x, "seed": s}, y)
    layer = model.classifier.get_layer("mix")
    # Period 2: even positions are clean, odd ones are attacked.
    clean_mean = (1 - MOMENTUM) * x[0::2].mean(axis=(0, 1, 2))
    np.testing.assert_allclose(layer.clean.moving_mean.numpy(), clean_mean, rtol=1e-5)
    # The adversarial branch saw perturbed odd images: one update, within eps
    # of their mean, and not the clean images' mean.
    adv_seen = layer.adv.moving_mean.numpy() / (1 - MOMENTUM)
    assert np.all(np.abs(adv_seen - x[1::2].mean(axis=(0, 1, 2))) <= eps + 1e-5)
    assert not np.allclose(adv_seen, x[0::2].mean(axis=(0, 1, 2)), atol=1e-3)
    # A second step moves both again: one update per step per branch.
    model.train_on_batch({"image": x, "seed": s}, y)
    expected = clean_mean * (1 + MOMENTUM)
    np.testing.assert_allclose(layer.clean.moving_mean.numpy(), expected, rtol=1e-5)


def test_adversarial_only_training_leaves_clean_branch_untouched():
    model = AdversarialModel(_mix_model(), attack=PGD(0.05, steps=2), clean_ratio=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y, s = _data()
    model.train_on_batch({"image": x, "seed": s}, y)
    layer = model.classifier.get_layer("mix")
    np.testing.assert_array_equal(layer.clean.moving_mean.numpy(), 0.0)
    assert np.all(np.isfinite(layer.adv.moving_mean.numpy()))
    assert np.abs(layer.adv.moving_mean.numpy()).max() > 0


@pytest.mark.parametrize("attack_branch, moves", [("adv", True), ("clean", False)])
def test_training_attack_runs_through_the_chosen_branch(attack_branch, moves):
    classifier = _mix_model()
    layer = classifier.get_layer("mix")
    # The clean branch outputs a constant (gamma 0): its input gradient is 0,
    # so an FGSM step through it cannot move the images.
    _set_stats(layer, clean=(0.0, 1.0, 0.0, 0.0), adv=(0.0, 1.0, 1.0, 0.0))
    model = AdversarialModel(classifier, attack=FGSM(0.1), attack_branch=attack_branch)
    model.compile(optimizer="sgd")
    x, y, s = _data()
    with tf.GradientTape() as tape:
        step = adversarial_model._Step(model, tape, tf.constant(1.0))
        x_adv = step.attack(tf.constant(x), tf.constant(y), tf.constant(s)).numpy()
    assert (np.abs(x_adv - x).max() > 0.05) == moves


def test_branch_survives_save_and_load_and_set_branch_retraces(tmp_path):
    classifier = _mix_model(branch="clean")
    _set_stats(classifier.get_layer("mix"), clean=(1.0, 4.0, 1.0, 0.0), adv=(0.0, 1.0, 2.0, 0.5))
    x, _, _ = _data()
    path = str(tmp_path / "m.keras")
    classifier.save(path)
    loaded = keras.models.load_model(path)
    assert mixbn.inference_branch(loaded) == "clean"
    before = loaded.predict(x, verbose=0)
    np.testing.assert_allclose(before, classifier.predict(x, verbose=0), atol=1e-6)
    mixbn.set_branch(loaded, "adv")
    after = loaded.predict(x, verbose=0)  # a cached predict function would repeat `before`
    assert not np.allclose(before, after, atol=1e-3)
    np.testing.assert_allclose(after, loaded(x, training=False).numpy(), atol=1e-6)


def test_adversarial_model_set_bn_branch_changes_evaluation():
    classifier = _mix_model()
    _set_stats(classifier.get_layer("mix"), clean=(1.0, 4.0, 1.0, 0.0), adv=(0.0, 1.0, 2.0, 0.5))
    model = AdversarialModel(classifier, attack=PGD(0.05, steps=1), eval_attack=PGD(0.05, steps=1))
    model.compile(optimizer="sgd")
    x, y, s = _data()
    data = ({"image": x, "seed": s}, y)
    adv_loss = model.evaluate(*data, verbose=0, return_dict=True)["loss"]
    model.set_bn_branch("clean")
    clean_loss = model.evaluate(*data, verbose=0, return_dict=True)["loss"]
    assert abs(adv_loss - clean_loss) > 1e-3
    with mixbn.route(classifier, "clean"):
        logits = classifier(x, training=False)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    np.testing.assert_allclose(clean_loss, float(expected), rtol=1e-5)


def test_compare_branches_numbers_and_plot(tmp_path):
    model = _mix_model()
    _set_stats(model.get_layer("mix"), clean=(1.0, 4.0, 1.0, 0.0), adv=(2.0, 16.0, 1.0, 0.0))
    (row,) = mixbn.compare_branches(model)
    assert row["layer"] == "mix" and row["channels"] == 2
    # |2 - 1| / sqrt(4 + eps); (16 + eps) / (4 + eps).
    np.testing.assert_allclose(row["mean_shift"], 1 / np.sqrt(4 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(row["var_ratio"], (16 + 1e-5) / (4 + 1e-5), rtol=1e-6)
    assert "mean_shift" in mixbn.format_comparison([row])
    path = tmp_path / "bn.png"
    mixbn.plot_branches(model, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no MixBatchNormalization"):
        mixbn.compare_branches(helpers.tiny_classifier(batch_norm=False))


def test_resnet_with_mixbn_factory_trains_and_saves(tmp_path):
    classifier = models.cifar_resnet(8, (8, 8, 3), 4, batch_norm=mixbn.mix_batch_norm())
    layers = mixbn.mixbn_layers(classifier)
    assert len(layers) == 9  # stem, 2 per block, projections of stages 2 and 3
    model = AdversarialModel(classifier, attack=PGD(0.03, steps=1), clean_ratio=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    rng = np.random.RandomState(0)
    x = rng.rand(8, 8, 8, 3).astype("float32")
    y = rng.randint(0, 4, 8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for layer in layers:
        assert not np.allclose(layer.clean.moving_mean.numpy(), layer.adv.moving_mean.numpy())
    path = str(tmp_path / "r.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert loaded.attack_branch == "adv"


def test_trades_with_mixbn_is_refused():
    with pytest.raises(ValueError, match="trades"):
        AdversarialModel(_mix_model(), attack=PGD(0.1, steps=1), method="trades")
    with pytest.raises(ValueError, match="branch"):
        mixbn.MixBatchNormalization(branch="both")
