"""Shared checks for every model builder (the `run_layer_test` of keras-hub, for models)."""

import tempfile

import keras
import numpy as np
import tensorflow as tf


def run_model_test(model, input_shape, num_classes, tmp_path=None, batch=2, roundtrip=True):
    """Checks the model contract of `tfrobust.models`.

    Output shape (batch, num_classes) and float32; logits, i.e. rows that are
    not forced to sum to 1 (softmax) or lie in [0, 1]; a `.keras` save/load
    roundtrip that gives identical outputs; finite, nonzero input gradients.

    Args:
        model: the `keras.Model` under test.
        input_shape: (H, W, C).
        num_classes: expected number of logits.
        tmp_path: pytest's `tmp_path`; None uses a temporary directory.
        batch: batch size of the random [0, 1] inputs.
        roundtrip: whether to save and load (slow for large models).
    """
    assert isinstance(model, keras.Model)
    assert tuple(model.input_shape[1:]) == tuple(input_shape)
    x = np.random.RandomState(0).rand(batch, *input_shape).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (batch, num_classes), y.shape
    assert y.dtype == np.float32, y.dtype
    assert np.all(np.isfinite(y))
    # A softmax output would have rows summing to 1 and values in [0, 1].
    assert not np.allclose(y.sum(-1), 1.0, atol=1e-3), "outputs look like probabilities, not logits"
    assert not np.all((y >= 0) & (y <= 1)), "outputs look like probabilities, not logits"
    if roundtrip:
        if tmp_path is None:
            with tempfile.TemporaryDirectory() as d:
                _check_roundtrip(model, x, y, f"{d}/{model.name}.keras")
        else:
            _check_roundtrip(model, x, y, str(tmp_path / f"{model.name}.keras"))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(model(xt, training=False)[:, 0])
    g = tape.gradient(out, xt)
    assert g is not None, "no gradient reaches the input"
    g = g.numpy()
    assert np.all(np.isfinite(g)), "non-finite input gradients"
    assert np.abs(g).max() > 0, "zero input gradients"


def _check_roundtrip(model, x, y, path):
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_allclose(loaded(x, training=False).numpy(), y, rtol=1e-6, atol=1e-6)
