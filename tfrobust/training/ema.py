"""Weight averaging (EMA) whose decay warms up, as TF's ExponentialMovingAverage.

Keras optimizers average the weights with a fixed decay from the first step
(`use_ema=True, ema_momentum=d`), so after t steps a fraction d**t of the
average is still the initial, random weights: at d = 0.995 that is 61% after
100 steps and 22% after 300. Gowal et al.'s code (the DeepMind
`adversarial_robustness` JAX pipeline that produced arXiv 2110.09468) uses the
warm-up of `tf.train.ExponentialMovingAverage(num_updates=...)` instead:

    decay_t = min(d, (1 + t) / (10 + t))

which averages over roughly the last t/10 to t steps until it reaches d.
"""

import keras
from keras import ops


def warmed_up_decay(decay, step):
    """`min(decay, (1 + step) / (10 + step))`, as a float32 tensor."""
    step = ops.cast(step, "float32")
    return ops.minimum(ops.cast(decay, "float32"), (1.0 + step) / (10.0 + step))


def _with_warmup(base):
    @keras.saving.register_keras_serializable(package="tfrobust", name=f"{base.__name__}EMAWarmup")
    class Optimizer(base):
        __doc__ = (f"`keras.optimizers.{base.__name__}` whose EMA decay warms up as "
                   "`min(ema_momentum, (1 + t) / (10 + t))` at step t (see `tfrobust.training.ema`).")

        def _update_model_variables_moving_average(self, trainable_variables):
            # Keras reads `self.ema_momentum` while tracing the update; lending it
            # the step's decay reuses Keras's own (distribution-aware) update.
            decay = self.ema_momentum
            self.ema_momentum = warmed_up_decay(decay, self.iterations)
            try:
                super()._update_model_variables_moving_average(trainable_variables)
            finally:
                self.ema_momentum = decay

    Optimizer.__name__ = Optimizer.__qualname__ = f"{base.__name__}EMAWarmup"
    return Optimizer


SGDEMAWarmup = _with_warmup(keras.optimizers.SGD)
AdamEMAWarmup = _with_warmup(keras.optimizers.Adam)
AdamWEMAWarmup = _with_warmup(keras.optimizers.AdamW)

__all__ = ["AdamEMAWarmup", "AdamWEMAWarmup", "SGDEMAWarmup", "warmed_up_decay"]
