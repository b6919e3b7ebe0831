import keras
import numpy as np
import tensorflow as tf


def run_model_test(model, input_shape, num_classes, tmp_path, batch=2):
    """Output shape and dtype, logits (not probabilities), .keras roundtrip, input gradients."""
    x = np.random.RandomState(0).rand(batch, *input_shape).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (batch, num_classes) and y.dtype == np.float32
    assert not np.allclose(y.sum(-1), 1.0), "outputs look like probabilities, not logits"
    path = str(tmp_path / f"{model.name}.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x, training=False).numpy(), y, atol=1e-5)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(model(xt, training=False)[:, 0])
    g = tape.gradient(out, xt).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
