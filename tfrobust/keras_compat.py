"""The few pieces of Keras 3 behaviour that tfrobust needs and Keras does not export.

tfrobust imports no private `keras.src` module: what it needs from inside
Keras is here, written against public APIs where possible, and
`tests/test_keras_compat.py` pins each piece to the behaviour of the Keras
code it stands for, so a Keras release that changes it fails that test.

- `scale_loss_for_distribution` / `unscale_loss_for_distribution`: Keras'
  convention for a loss under `tf.distribute` (each replica's loss divided by
  the number of replicas, so that the summed gradients are the global mean's).
  `AdversarialModel` adds its own loss terms to Keras' and must scale them the
  same way.
- `is_functional` / `run_through_graph`: walking a functional model's graph
  with a function per layer (`tfrobust.models.folding`). This uses Keras'
  private `_run_through_graph` method and `_call_context_args` attribute;
  without them folding is off (`is_functional` is False) and models run as
  they are.
"""

import keras
import tensorflow as tf
from keras import ops


def _num_replicas():
    # Keras asks the same question of tf.distribute (its TensorFlow backend's loss scaling).
    if keras.backend.backend() != "tensorflow":
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_distribution(value):
    """`value` divided by the number of replicas in sync, as Keras scales a loss for `tf.distribute`.

    Args:
        value: a scalar loss tensor.

    Returns:
        `value / num_replicas_in_sync` (`value` itself on one replica).
    """
    n = _num_replicas()
    return value if n == 1 else ops.multiply(value, ops.cast(1.0 / n, value.dtype))


def unscale_loss_for_distribution(value):
    """`value` times the number of replicas in sync: the inverse of `scale_loss_for_distribution`.

    Args:
        value: a scalar loss tensor scaled for distribution.

    Returns:
        `value * num_replicas_in_sync` (`value` itself on one replica).
    """
    n = _num_replicas()
    return value if n == 1 else ops.multiply(value, ops.cast(n, value.dtype))


def is_functional(model):
    """Whether `model` is a functional Keras model whose graph `run_through_graph` can walk."""
    return isinstance(model, keras.Model) and callable(getattr(model, "_run_through_graph", None))


def run_through_graph(model, inputs, layer_fn, training=False):
    """Runs a functional model's graph on `inputs`, calling `layer_fn(layer)` in place of each layer.

    Args:
        model: a model for which `is_functional(model)` holds.
        inputs: one input tensor.
        layer_fn: `layer -> callable or None`; a callable replaces the
            layer's call, None keeps the layer's own.
        training: passed to the layers (and only those) that take a
            `training` argument, as Keras' `model(x, training=...)` does.

    Returns:
        The model's output (a single tensor for a single-output model).
    """

    def operation_fn(layer):
        replacement = layer_fn(layer)
        if replacement is not None:
            return replacement

        def call(*args, **kwargs):
            if "training" in getattr(layer, "_call_context_args", ()):
                kwargs["training"] = training
            return layer(*args, **kwargs)

        return call

    outputs = model._run_through_graph([inputs], operation_fn=operation_fn)
    return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs


__all__ = ["is_functional", "run_through_graph", "scale_loss_for_distribution", "unscale_loss_for_distribution"]
