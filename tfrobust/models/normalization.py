"""Normalisation inside the model, so that its inputs are [0, 1] pixels."""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfrobust")
class Normalize(keras.layers.Layer):
    """Computes `(x - mean) / std` per channel (the last axis).

    Attacks work in [0, 1] pixel space and eps is in those units; putting the
    normalisation in the model keeps that contract for every caller, export
    included. The statistics are constants, not weights.

    Args:
        mean: a scalar or one value per channel; None means no shift (with
            `std=None` too, the layer is the identity).
        std: a scalar or one value per channel, each > 0; None means 1.
        **kwargs: base `keras.layers.Layer` arguments (e.g. `name`).

    Call arguments:
        inputs: a float tensor whose last axis is the channel axis.

    Example:
        >>> layer = Normalize([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616])
    """

    def __init__(self, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.mean = _as_list(mean, "mean")
        self.std = _as_list(std, "std")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0. Received: std={std!r}")

    def build(self, input_shape):
        channels = input_shape[-1]
        for arg, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and channels is not None and len(values) not in (1, channels):
                raise ValueError(
                    f"{arg} must be a scalar or have one value per channel ({channels}). "
                    f"Received: {arg}={values}"
                )
        super().build(input_shape)

    def call(self, inputs):
        x = inputs
        if self.mean is not None:
            x = x - ops.cast(ops.convert_to_tensor(self.mean), x.dtype)
        if self.std is not None:
            x = x / ops.cast(ops.convert_to_tensor(self.std), x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config


def _as_list(value, arg):
    if value is None:
        return None
    try:
        values = np.asarray(value, dtype="float64").ravel().tolist()
    except (TypeError, ValueError):
        raise TypeError(f"{arg} must be None, a number or a sequence of numbers. "
                        f"Received: {arg}={value!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{arg} must be non-empty and finite. Received: {arg}={value!r}")
    return values


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` in `model`, nested ones (MixBN's) included."""
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def default_batch_norm(name):
    """The default `batch_norm` factory of every model with BatchNorm.

    PyTorch's defaults: its momentum 0.1 (weight of the new batch) is Keras's
    momentum 0.9 (weight of the running value); epsilon 1e-5.

    Args:
        name: the layer name.

    Returns:
        A `keras.layers.BatchNormalization`.
    """
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def synchronized_batch_norm(name):
    """`default_batch_norm` with statistics all-reduced across replicas.

    Under a `tf.distribute` strategy each training pass normalises with the
    mean and variance of the global batch, so a run on N replicas computes
    what one device computes on the whole batch (tested); plain BatchNorm
    normalises each replica's slice by itself. Without a strategy the two are
    the same layer. The cost is one all-reduce per layer per training pass.

    Args:
        name: the layer name.

    Returns:
        A `keras.layers.BatchNormalization(synchronized=True)`.
    """
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)
