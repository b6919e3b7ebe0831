import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import models
from tfrobust.models import folding, mixbn


def _randomise_batch_norms(model, seed=0):
    rng = np.random.RandomState(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer) in folding._FOLDABLE:
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.3, 3, c).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, c).astype("float32"))


def _value_and_input_grad(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)
        loss = tf.reduce_sum(tf.square(out))
    return out, tape.gradient(loss, x)


def test_every_conv_bn_pair_of_a_cifar_resnet_is_folded_and_exact():
    model = models.cifar_resnet(8)
    _randomise_batch_norms(model)
    bns = [l for l in model.layers if type(l) is keras.layers.BatchNormalization]
    assert len(folding.conv_bn_pairs(model)) == len(bns) == 9  # stem, 3 blocks x 2, 2 projections
    x = tf.random.stateless_uniform([4, 32, 32, 3], seed=[1, 2])
    out, grad = _value_and_input_grad(folding.inference_forward(model), x)
    ref_out, ref_grad = _value_and_input_grad(lambda v: model(v, training=False), x)
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=1e-3, atol=1e-4)


def test_fold_follows_the_current_weights_and_never_updates_statistics():
    model = models.cifar_resnet(8)
    _randomise_batch_norms(model)
    forward = tf.function(folding.inference_forward(model))
    x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[3, 4])
    forward(x)  # traced with the first weights
    _randomise_batch_norms(model, seed=1)  # as a training step would change them
    before = [v.numpy().copy() for v in model.non_trainable_weights]
    np.testing.assert_allclose(forward(x).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    for a, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(a.numpy(), b)


def test_mixbn_and_non_functional_models_run_unfolded():
    model = models.cifar_resnet(8, batch_norm=mixbn.mix_batch_norm())
    assert folding.conv_bn_pairs(model) == {}
    x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[5, 6])
    np.testing.assert_allclose(folding.inference_forward(model)(x).numpy(), model(x, training=False).numpy())

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3, use_bias=False)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=False):
            return self.bn(self.conv(x), training=training)

    sub = Sub()
    assert folding.conv_bn_pairs(sub) == {}
    np.testing.assert_allclose(folding.inference_forward(sub)(x).numpy(), sub(x, training=False).numpy())


def test_folding_can_be_switched_off(monkeypatch):
    model = models.cifar_resnet(8)
    monkeypatch.setenv("TFROBUST_FOLD_BN", "0")
    assert not folding.enabled()
    calls = []
    original = model.call
    monkeypatch.setattr(model, "call", lambda *a, **k: calls.append(1) or original(*a, **k))
    folding.inference_forward(model)(tf.zeros([1, 32, 32, 3]))
    assert calls  # the model's own call ran


def test_fold_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.cifar_resnet(8)
        _randomise_batch_norms(model)
        # Built under the mixed policy, the BatchNorms are LowPrecisionBatchNorm, and they fold all the same.
        assert len(folding.conv_bn_pairs(model)) == 9
        x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[7, 8])
        out = folding.inference_forward(model)(x)
        ref = model(x, training=False)
        assert out.dtype == ref.dtype
        np.testing.assert_allclose(np.float32(out), np.float32(ref), atol=0.15 * float(np.abs(ref).max()) + 0.05)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_attacks_use_the_folded_forward():
    from tfrobust.attacks import base

    model = models.cifar_resnet(8)
    _randomise_batch_norms(model)
    x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[9, 9])
    forward = base.forward_fn(model, "inference")
    np.testing.assert_allclose(forward(x).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    assert forward.__name__ == "forward"  # the folding walker, not the plain call


def test_a_convolution_with_its_own_activation_is_not_folded():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, activation="relu", use_bias=False)(inputs))
    out = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, use_bias=False)(h))
    model = keras.Model(inputs, out)
    _randomise_batch_norms(model)
    assert len(folding.conv_bn_pairs(model)) == 1  # only the linear convolution
    x = tf.random.stateless_uniform([2, 8, 8, 3], seed=[1, 3])
    np.testing.assert_allclose(folding.inference_forward(model)(x).numpy(), model(x, training=False).numpy(),
                               rtol=1e-4, atol=1e-4)
