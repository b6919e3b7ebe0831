import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import PGD
from tfrobust.training import AdversarialModel, ema


def test_warmed_up_decay_is_tfs_schedule_capped_at_the_decay():
    got = [float(ema.warmed_up_decay(0.99, t)) for t in (0, 1, 10, 90, 1000)]
    np.testing.assert_allclose(got, [0.1, 2 / 11, 0.55, 0.91, 0.99], rtol=1e-6)


class _RawWeights(keras.callbacks.Callback):
    """The raw first kernel after every optimizer step."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(self.model.classifier.trainable_weights[0].numpy().copy())


def _fit(optimizer, strategy=None, epochs=2):
    strategy = strategy or tf.distribute.get_strategy()
    x, y, s = helpers.toy_data(n=48)
    with strategy.scope():
        model = AdversarialModel(helpers.tiny_classifier(batch_norm=False), attack=PGD(0.1, steps=1))
        model.compile(optimizer=optimizer())
    raw = _RawWeights()
    model.fit({"image": x, "seed": s}, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[raw])
    return model, raw.values


@pytest.mark.parametrize("cls", [ema.SGDEMAWarmup, ema.AdamEMAWarmup, ema.AdamWEMAWarmup])
def test_the_average_follows_the_warmed_up_decay(cls):
    model, raw = _fit(lambda: cls(0.05, use_ema=True, ema_momentum=0.9))
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


def test_the_warmed_up_average_matches_single_device_under_mirrored_strategy():
    runs = [_fit(lambda: ema.SGDEMAWarmup(0.5, use_ema=True, ema_momentum=0.9), strategy)[0]
            for strategy in (None, helpers.mirrored_strategy())]
    for a, b in zip(*(m.classifier.weights for m in runs)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_the_optimizer_survives_a_save_and_load(tmp_path):
    model, _ = _fit(lambda: ema.SGDEMAWarmup(0.5, momentum=0.9, use_ema=True, ema_momentum=0.9), epochs=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is ema.SGDEMAWarmup
    assert loaded.optimizer.ema_momentum == pytest.approx(0.9) and loaded.optimizer.momentum == pytest.approx(0.9)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
