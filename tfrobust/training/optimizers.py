"""Keras optimizers with two options of Gowal et al.'s code: EMA warm-up, and no weight decay on BatchNorm.

EMA warm-up. Keras optimizers average the weights with a fixed decay from the
first step (`use_ema=True, ema_momentum=d`), so after t steps a fraction d**t
of the average is still the initial, random weights: at d = 0.995 that is 61%
after 100 steps and 22% after 300. Gowal et al.'s code (the DeepMind
`adversarial_robustness` JAX pipeline behind arXiv 2110.09468) uses the warm-up
of `tf.train.ExponentialMovingAverage(num_updates=...)` instead:

    decay_t = min(d, (1 + t) / (10 + t))

which averages over roughly the last t/10 to t steps until it reaches d. (At
t = 0 Keras copies the weights into the average, where their code uses a decay
of 0.1; the difference is gone after a few steps.)

BatchNorm and weight decay. Keras's decoupled `weight_decay` shrinks every
trainable variable, BatchNorm's gamma and beta included; their L2 term skips
BatchNorm. `decay_batch_norm=False` excludes gamma and beta. Both options are
part of the optimizer's config, so a run resumed from a checkpoint keeps them.
"""

import keras
from keras import ops

BATCH_NORM_VARIABLES = ("gamma", "beta")


def warmed_up_decay(decay, step):
    """`min(decay, (1 + step) / (10 + step))`, as a float32 tensor."""
    step = ops.cast(step, "float32")
    return ops.minimum(ops.cast(decay, "float32"), (1.0 + step) / (10.0 + step))


def _with_options(base):
    @keras.saving.register_keras_serializable(package="tfrobust", name=base.__name__)
    class Optimizer(base):
        __doc__ = (f"`keras.optimizers.{base.__name__}` with `ema_warmup` and `decay_batch_norm` (see "
                   "`tfrobust.training.optimizers`).\n\n    Args:\n"
                   "        ema_warmup: EMA decay `min(ema_momentum, (1 + t) / (10 + t))` at step t.\n"
                   "        decay_batch_norm: False excludes BatchNorm's gamma and beta from weight decay.\n"
                   f"        **kwargs: `keras.optimizers.{base.__name__}`'s arguments.\n")

        def __init__(self, *args, ema_warmup=False, decay_batch_norm=True, **kwargs):
            super().__init__(*args, **kwargs)
            self.ema_warmup, self.decay_batch_norm = bool(ema_warmup), bool(decay_batch_norm)
            if self.ema_warmup and self.gradient_accumulation_steps:
                # Keras updates the average on every micro-step, which would apply each warmed-up decay k times.
                raise ValueError("ema_warmup does not support gradient_accumulation_steps. "
                                 f"Received: gradient_accumulation_steps={self.gradient_accumulation_steps}")
            if not self.decay_batch_norm:
                self.exclude_from_weight_decay(var_names=list(BATCH_NORM_VARIABLES))
            self._ema_cap = float(self.ema_momentum)

        def _update_model_variables_moving_average(self, trainable_variables):
            if not self.ema_warmup:
                return super()._update_model_variables_moving_average(trainable_variables)
            # Keras reads `self.ema_momentum` while tracing the update; lending it
            # the step's decay reuses Keras's own (distribution-aware) update. The
            # float is restored from `_ema_cap`, never from what was read on entry,
            # so replicas tracing one after another cannot leave a tensor behind.
            self.ema_momentum = warmed_up_decay(self._ema_cap, self.iterations)
            try:
                super()._update_model_variables_moving_average(trainable_variables)
            finally:
                self.ema_momentum = self._ema_cap

        def get_config(self):
            return {**super().get_config(), "ema_warmup": self.ema_warmup, "decay_batch_norm": self.decay_batch_norm}

    Optimizer.__name__ = Optimizer.__qualname__ = base.__name__
    Optimizer.__module__ = __name__
    return Optimizer


SGD = _with_options(keras.optimizers.SGD)
Adam = _with_options(keras.optimizers.Adam)
AdamW = _with_options(keras.optimizers.AdamW)

__all__ = ["Adam", "AdamW", "BATCH_NORM_VARIABLES", "SGD", "warmed_up_decay"]
