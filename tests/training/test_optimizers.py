import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import PGD
from tfrobust.training import AdversarialModel, optimizers


def test_warmed_up_decay_is_tfs_schedule_capped_at_the_decay():
    got = [float(optimizers.warmed_up_decay(0.99, t)) for t in (0, 1, 10, 90, 1000)]
    np.testing.assert_allclose(got, [0.1, 2 / 11, 0.55, 0.91, 0.99], rtol=1e-6)


class _RawWeights(keras.callbacks.Callback):
    """The raw first kernel after every optimizer step."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(self.model.classifier.trainable_weights[0].numpy().copy())


def _fit(optimizer, strategy=None, epochs=2, batch_norm=False):
    strategy = strategy or tf.distribute.get_strategy()
    x, y, s = helpers.toy_data(n=48)
    with strategy.scope():
        model = AdversarialModel(helpers.tiny_classifier(batch_norm=batch_norm), attack=PGD(0.1, steps=1))
        model.compile(optimizer=optimizer())
    raw = _RawWeights()
    model.fit({"image": x, "seed": s}, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[raw])
    return model, raw.values


def _warm(cls, lr, **kwargs):
    return lambda: cls(lr, use_ema=True, ema_momentum=0.9, ema_warmup=True, **kwargs)


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Adam, optimizers.AdamW])
def test_the_average_follows_the_warmed_up_decay(cls):
    model, raw = _fit(_warm(cls, 0.05))
    expected = raw[0]  # step 0 copies the weights, as Keras does
    for t, w in enumerate(raw[1:], start=1):
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * w
    final = model.classifier.trainable_weights[0].numpy()
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
    # Keras's fixed decay gives another average from the same trajectory (6 steps: 0.9 vs 0.18-0.6).
    fixed = raw[0]
    for w in raw[1:]:
        fixed = 0.9 * fixed + 0.1 * w
    assert not np.allclose(final, fixed, atol=1e-4)


def test_without_warmup_the_average_is_keras_own():
    model, raw = _fit(lambda: optimizers.SGD(0.05, use_ema=True, ema_momentum=0.9))
    fixed = raw[0]
    for w in raw[1:]:
        fixed = 0.9 * fixed + 0.1 * w
    np.testing.assert_allclose(model.classifier.trainable_weights[0].numpy(), fixed, rtol=1e-5, atol=1e-6)


def test_the_warmed_up_average_matches_single_device_under_mirrored_strategy(tmp_path):
    runs = [_fit(_warm(optimizers.SGD, 0.5), strategy)[0] for strategy in (None, helpers.mirrored_strategy())]
    for a, b in zip(*(m.classifier.weights for m in runs)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    # Each replica traced the update with a tensor decay; the optimizer keeps its float, so it still saves.
    mirrored = runs[1].optimizer
    assert type(mirrored.ema_momentum) is float and mirrored.get_config()["ema_momentum"] == pytest.approx(0.9)
    runs[1].save(str(tmp_path / "mirrored.keras"))


def test_gradient_accumulation_is_refused_with_warmup():
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        optimizers.SGD(0.1, use_ema=True, ema_momentum=0.9, ema_warmup=True, gradient_accumulation_steps=2)


def _decayed(decay_batch_norm):
    # No gradient, only decay: lr 1 and weight decay 0.1 shrink every decayed weight by 10%.
    classifier = helpers.tiny_classifier(batch_norm=True)
    opt = optimizers.SGD(1.0, weight_decay=0.1, decay_batch_norm=decay_batch_norm)
    before = [np.array(v) for v in classifier.trainable_variables]
    opt.apply([np.zeros(v.shape, "float32") for v in classifier.trainable_variables], classifier.trainable_variables)
    # Keyed by position and name, the same for every tiny_classifier (layer names get counters).
    return {f"{i}/{v.name}": (np.array(v), b) for i, (v, b) in enumerate(zip(classifier.trainable_variables, before))}


def test_batch_norm_can_be_left_out_of_weight_decay():
    kept = _decayed(False)
    bn = [p for p in kept if p.endswith(("gamma", "beta"))]
    assert len(bn) == 2
    for path, (after, before) in kept.items():
        expected = before if path in bn else 0.9 * before
        np.testing.assert_allclose(after, expected, rtol=1e-6, err_msg=path)
    gamma = [p for p in bn if p.endswith("gamma")][0]
    after, before = _decayed(True)[gamma]
    np.testing.assert_allclose(after, 0.9 * before, rtol=1e-6)  # Keras's default decays it


def test_the_options_survive_a_save_and_load(tmp_path):
    make = _warm(optimizers.SGD, 0.5, momentum=0.9, weight_decay=1e-3, decay_batch_norm=False)
    model, _ = _fit(make, epochs=1, batch_norm=True)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path).optimizer
    assert type(loaded) is optimizers.SGD and loaded.ema_warmup and not loaded.decay_batch_norm
    assert loaded.ema_momentum == pytest.approx(0.9) and loaded.momentum == pytest.approx(0.9)
    for a, b in zip(model.optimizer.variables, loaded.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
