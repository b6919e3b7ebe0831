"""Evaluating with BatchNorm's batch statistics instead of its moving averages."""

import tensorflow as tf

from tfrobust.attacks.base import refuse_synchronized_batch_stats, stateless_training_forward


class BatchStatsClassifier:
    """A Keras classifier whose BatchNorm layers normalise with the batch's statistics.

    Xie & Yuille ("Intriguing properties of adversarial training at scale",
    arXiv 1906.03787, Section 4) evaluate adversarially trained networks with
    BatchNorm in training mode as well as in the usual inference mode, to show
    that train/test BN behaviour matters. This wrapper gives the first: every
    call runs the model with `training=True` through `stateless_call` and
    drops the updated moving statistics, so evaluating never changes the
    model. Pass it anywhere a classifier is expected (attacks, `evaluate`).

    The outcome of an example then depends on the other examples of its batch
    (and, under attack, on their perturbations too): report the batch size
    with the numbers. Dropout, if the model has any, would be active as well.

    Args:
        model: a `keras.Model` mapping [0, 1] images to logits.
    """

    def __init__(self, model):
        if not hasattr(model, "stateless_call"):
            raise TypeError("BatchStatsClassifier needs a keras.Model (it uses stateless_call). "
                            f"Received: {type(model).__name__}")
        self.model = model
        self.output_shape = model.output_shape
        self.input_shape = model.input_shape
        self.name = model.name
        self._forward = stateless_training_forward(model)

    def __call__(self, x, training=False):
        del training
        try:
            return self._forward(x)
        except RuntimeError as err:
            # Synchronized BatchNorm under MirroredStrategy cannot all-reduce inside an attack's loop. Only TF can
            # tell that call from a clean pass, which works, so its error is translated rather than predicted.
            if "merge_call" not in str(err) or not tf.distribute.has_strategy():
                raise
            refuse_synchronized_batch_stats(self.model, tf.distribute.get_strategy(), cause=err)
            raise


__all__ = ["BatchStatsClassifier"]
