"""Normalisation inside the model, so that its inputs are [0, 1] pixels."""

import math

import keras
import numpy as np
import tensorflow as tf
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


@keras.saving.register_keras_serializable(package="tfrobust")
class LowPrecisionBatchNorm(keras.layers.BatchNormalization):
    """BatchNorm that normalises bfloat16 or float16 activations without leaving their dtype.

    Under a mixed-precision policy Keras' `BatchNormalization` casts its
    input to float32, normalises, and casts back, around every convolution.
    This layer hands the low-precision activations to TensorFlow's fused
    kernel (`tf.nn.fused_batch_norm`, oneDNN on the CPU), which keeps the
    statistics, gamma and beta in float32 and returns the input's dtype. It
    has the same variables and computes the same thing as Keras' layer: the
    batch's biased variance for normalising and for the moving averages,
    `moving = momentum * moving + (1 - momentum) * batch`. Measured on
    PreActResNet-18 under "mixed_bfloat16" (batch 128, 2 CPU cores), the clean
    training step ran 1.67x faster (benchmarks/README.md).

    Inputs it does not cover (not 4-D with the channels last, a mask, no
    gamma or beta) go through Keras' own computation.
    """

    def _fused(self, inputs, mask):
        return (mask is None and self.center and self.scale and len(inputs.shape) == 4
                and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True, data_format="NHWC")
            # The kernel returns the batch variance with Bessel's correction; Keras' moving variance is biased.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), variance.dtype)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
            variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon, is_training=False,
            data_format="NHWC")
        return y


def default_batch_norm(name):
    """The default `batch_norm` factory of every model with BatchNorm.

    PyTorch's defaults: its momentum 0.1 (weight of the new batch) is Keras's
    momentum 0.9 (weight of the running value); epsilon 1e-5. Under a
    bfloat16 or float16 dtype policy (`train.precision`), the layer is
    `LowPrecisionBatchNorm`, which normalises in that dtype.

    Args:
        name: the layer name.

    Returns:
        A `keras.layers.BatchNormalization`.
    """
    if keras.config.dtype_policy().compute_dtype in ("bfloat16", "float16"):
        return LowPrecisionBatchNorm(momentum=0.9, epsilon=1e-5, name=name)
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
