"""tfrobust.keras_compat behaves as the Keras internals it stands for (imported here, and only here)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.losses import loss as keras_loss

from tests import helpers
from tfrobust import keras_compat


@pytest.mark.parametrize("replicas", [1, 2])
def test_loss_scaling_matches_keras(replicas):
    strategy = tf.distribute.get_strategy() if replicas == 1 else helpers.mirrored_strategy()
    assert strategy.num_replicas_in_sync == replicas

    def step():
        value = tf.constant(3.0)
        return (keras_compat.scale_loss_for_distribution(value), keras_loss.scale_loss_for_distribution(value),
                keras_compat.unscale_loss_for_distribution(value), keras_loss.unscale_loss_for_distribution(value))

    ours, theirs, ours_back, theirs_back = (
        float(strategy.experimental_local_results(v)[0]) for v in strategy.run(tf.function(step)))
    assert ours == theirs == pytest.approx(3.0 / replicas)
    assert ours_back == theirs_back == pytest.approx(3.0 * replicas)


def _functional():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_only_functional_models_count_as_functional():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert keras_compat.is_functional(_functional())
    assert not keras_compat.is_functional(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    assert not keras_compat.is_functional(Subclassed())
    assert not keras_compat.is_functional(keras.layers.Dense(2))


def test_run_through_graph_is_the_model_with_training_passed_and_layers_replaceable():
    model = _functional()
    x = tf.random.stateless_uniform([16, 4], seed=[1, 2])
    np.testing.assert_allclose(keras_compat.run_through_graph(model, x, lambda layer: None, training=False),
                               model(x, training=False), rtol=1e-6)
    # training=True reaches the Dropout: about half the units are dropped, so the output changes.
    trained = keras_compat.run_through_graph(model, x, lambda layer: None, training=True)
    assert not np.allclose(trained, model(x, training=False))
    # A replacement runs in the layer's place.
    last = model.layers[-1]
    zeros = keras_compat.run_through_graph(model, x, lambda layer: (lambda h: h[:, :2] * 0.0) if layer is last else None)
    np.testing.assert_array_equal(zeros, np.zeros((16, 2)))
