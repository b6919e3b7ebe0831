"""Normalisation inside the model, so that its inputs are [0, 1] pixels."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfrobust")
class Normalize(keras.layers.Layer):
    """Computes `(x - mean) / std` per channel.

    Attacks work in [0, 1] pixel space and eps is in those units; putting the
    normalisation in the model keeps that contract for every caller, export
    included.

    Args:
        mean: a scalar or one value per channel; None means identity.
        std: a scalar or one value per channel; None means 1.
    """

    def __init__(self, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.mean = _as_list(mean)
        self.std = _as_list(std)
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0. Received: std={std}")

    def call(self, inputs):
        x = inputs
        if self.mean is not None:
            x = x - ops.cast(ops.convert_to_tensor(self.mean), x.dtype)
        if self.std is not None:
            x = x / ops.cast(ops.convert_to_tensor(self.std), x.dtype)
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config


def _as_list(v):
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return [float(v)]
    return [float(a) for a in v]


def default_batch_norm(name):
    """BatchNormalization with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5)."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
