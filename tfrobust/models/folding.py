"""BatchNorm folded into the convolution before it, for the attacks' inference-mode forward passes.

An attack runs the model k times per training step with `training=False`,
where a BatchNormalization is a fixed per-channel affine map. Folding it into
the preceding bias-free convolution (kernel times `gamma / sqrt(var + eps)`,
then one bias add) gives the same function with one elementwise pass less in
the forward and one less in the input-gradient backward pass. On 2 CPU cores
this made the PGD-10 training step of ResNet-20 about 1.2x faster, measured
side by side (`benchmarks/README.md`). The fold is recomputed from the current
variables at every call, so it always matches the weights being trained, and
gradients flow to the input exactly as through the unfolded model.

Only a plain `keras.layers.Conv2D` whose single output feeds only a plain
`keras.layers.BatchNormalization` (or `LowPrecisionBatchNorm`, the same map
computed in bfloat16 or float16) is folded; every other layer (MixBN, BN
after anything else, custom layers) runs as it is, with `training=False`.
Models that are not functional run unchanged. Set the environment variable
`TFROBUST_FOLD_BN=0` to switch folding off.

This walks the functional graph with Keras' own `Functional._run_through_graph`
(a private API of Keras 3, reached through `tfrobust.keras_compat`). If that
is missing, the unfolded model is used; `tests/models/test_folding.py` checks
that the fold is active on the CIFAR ResNets and equal to the model.
"""

import contextlib
import os

import keras
import tensorflow as tf
from keras import ops

from tfrobust import keras_compat
from tfrobust.models.normalization import LowPrecisionBatchNorm

# Exact types: a subclass may compute something else in inference mode.
_FOLDABLE = (keras.layers.BatchNormalization, LowPrecisionBatchNorm)


def enabled():
    """Whether folding is on (the `TFROBUST_FOLD_BN` environment variable, default on)."""
    return os.environ.get("TFROBUST_FOLD_BN", "1") not in ("0", "false", "False")


def conv_bn_pairs(model):
    """{id(conv): bn} for every Conv2D -> BatchNormalization pair of a functional model that can be folded."""
    if not keras_compat.is_functional(model):
        return {}
    pairs = {}
    for layer in model.layers:
        if type(layer) not in _FOLDABLE or len(layer._inbound_nodes) != 1:
            continue
        if layer.axis not in (-1, 3):
            continue
        source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        # A convolution with its own activation is not a linear map, so it cannot absorb the BatchNorm.
        if (type(source) is keras.layers.Conv2D and source.data_format == "channels_last"
                and source.activation in (None, keras.activations.linear)
                and len(source._inbound_nodes) == 1 and len(source._outbound_nodes) == 1):
            pairs[id(source)] = layer
    return pairs


def _folded(conv, bn):
    def run(x):
        scale = ops.rsqrt(bn.moving_variance + bn.epsilon)
        if bn.scale:
            scale = scale * bn.gamma
        shift = -bn.moving_mean * scale
        if bn.center:
            shift = shift + bn.beta
        if conv.use_bias:
            shift = shift + conv.bias * scale
        dtype = conv.compute_dtype
        y = conv.convolution_op(ops.cast(x, dtype), ops.cast(conv.kernel * scale, dtype))
        # BiasAdd (not an Add) lets TF's graph optimiser fuse it into the convolution's oneDNN kernel.
        y = tf.nn.bias_add(y, ops.cast(shift, dtype))
        # The BatchNorm's output dtype, as the unfolded model would give it.
        return ops.cast(y, bn.compute_dtype)

    return run


def inference_forward(model):
    """`x -> model(x, training=False)`, with foldable BatchNorms folded into their convolutions.

    Args:
        model: a Keras model (any kind; only functional ones are folded).

    Returns:
        A callable on a batch of images.
    """
    pairs = conv_bn_pairs(model) if enabled() else {}
    if not pairs:
        return lambda x: model(x, training=False)
    folded_bns = {id(bn) for bn in pairs.values()}

    def operation(op):
        if id(op) in pairs:
            return _folded(op, pairs[id(op)])
        if id(op) in folded_bns:
            return lambda x, **kwargs: x
        return None  # the layer itself, with training=False

    def forward(x):
        return keras_compat.run_through_graph(model, x, operation, training=False)

    return forward


@contextlib.contextmanager
def temporary_policy(model, policy):
    """Runs the model's layers under another dtype policy (e.g. "mixed_bfloat16") inside the block.

    Meant for tracing: a forward pass traced inside the block computes in the
    policy's dtype with the same float32 variables (cast on the fly), and the
    model is back to its own policies afterwards, so the training pass traced
    next is unchanged.
    """
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    saved = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = policy
        yield model
    finally:
        for layer, old in zip(layers, saved):
            layer.dtype_policy = old


def compute_in_float32(model):
    """Makes every layer of `model` compute in float32, in place, and returns whether any did not.

    A model trained under a mixed policy ("mixed_bfloat16", "mixed_float16")
    keeps float32 variables, so the same weights evaluate in full precision:
    robustness figures should not depend on the training precision's rounding.
    """
    changed = False
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if layer.dtype_policy.compute_dtype != "float32":
            layer.dtype_policy = "float32"
            changed = True
    return changed


__all__ = ["compute_in_float32", "conv_bn_pairs", "enabled", "inference_forward", "temporary_policy"]
