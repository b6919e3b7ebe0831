"""Pieces every attack shares: input checks, seeds, the BatchNorm-safe forward pass."""

import dataclasses

import numpy as np
import tensorflow as tf

from tfrobust.data import seeds as seeds_lib


class AttackMixin:
    """`get_config`, `from_config` and `replace` for attacks written as frozen dataclasses.

    Every attack in tfrobust is a frozen dataclass with at least `eps`, `norm`
    and `name` fields, and is called as `attack(model, x, y, seeds)`.
    """

    def get_config(self):
        """Returns the attack's parameters as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def replace(self, **changes):
        """Returns a copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


def prepare(x, y, seeds):
    """Checks `x`, converts `y`, and fills in position seeds when `seeds` is None."""
    x = check_images(x)
    y = tf.convert_to_tensor(y)
    if seeds is None:
        seeds = position_seeds(tf.shape(x)[0])
    return x, y, tf.convert_to_tensor(seeds, seeds_lib.SEED_DTYPE)


def position_seeds(batch_size, global_seed=0):
    """Seeds from the position in the batch: a fallback for batches without seeds."""
    positions = tf.range(batch_size, dtype=seeds_lib.SEED_DTYPE)
    pairs = tf.stack([positions, tf.fill([batch_size], tf.constant(global_seed, seeds_lib.SEED_DTYPE))], 1)
    return seeds_lib.derive(pairs, seeds_lib.ATTACK_SALT)


PRECISIONS = ("float32", "bfloat16")


def forward_fn(model, bn, precision="float32"):
    """`x -> logits` that never updates BatchNorm statistics.

    `precision="bfloat16"` computes the passes in bfloat16 (the model's
    layers under the "mixed_bfloat16" policy while the pass is traced; the
    variables stay float32), for training attacks on hardware with fast
    bfloat16 (AMX here, TPUs, recent GPUs). The caller casts logits back to
    float32 for the loss.

    "inference" calls the model with `training=False`, with each Conv2D ->
    BatchNormalization pair folded into one convolution (`models.folding`:
    the same function, cheaper); "batch_stats" uses batch statistics through
    `stateless_call` and drops the new moving statistics.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision == "bfloat16":
        from tfrobust.models import folding

        inner = forward_fn(model, bn)

        def bfloat16_forward(x):
            with folding.temporary_policy(model, "mixed_bfloat16"):
                return inner(x)

        return bfloat16_forward
    if bn == "inference":
        from tfrobust.models import folding

        return folding.inference_forward(model)

    check_batch_stats_under_strategy(model)
    return stateless_training_forward(model)


def stateless_training_forward(model):
    """`x -> logits` normalising with the batch's statistics, without updating them.

    The "batch_stats" pass of `forward_fn`, without its check: for passes
    outside an attack's loop, where synchronized BatchNorm works under a
    strategy.
    """

    def batch_stats_forward(x):
        # Batch statistics as in training, but the new moving statistics that
        # stateless_call returns are dropped: the attack never updates them.
        logits, _ = model.stateless_call(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            x,
            training=True,
        )
        return logits

    return batch_stats_forward


def check_batch_stats_under_strategy(model):
    """Refuses, with a clear error, a batch-statistics attack that TF would fail on.

    A `BatchNormalization(synchronized=True)` layer all-reduces its batch
    moments. Under MirroredStrategy and MultiWorkerMirroredStrategy that
    all-reduce is a cross-replica `merge_call` (see `strategy_merges`), which
    TF does not allow inside an attack's `tf.function` or `tf.while_loop`; it
    would fail there with an unclear RuntimeError. Called while an attack is
    traced. TPUStrategy all-reduces without a merge_call and passes, as does
    no strategy.

    Args:
        model: the classifier the attack runs.

    Raises:
        ValueError: under such a strategy, when `model` has synchronized
            BatchNorm layers.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        if strategy_merges(strategy):
            refuse_synchronized_batch_stats(model, strategy)


def strategy_merges(strategy, xla=None):
    """Whether synchronized BatchNorm all-reduces through `merge_call` under `strategy`.

    Mirrors TF's `MirroredExtended._use_merge_call` (MultiWorkerMirrored's is
    the same): MirroredStrategy and MultiWorkerMirroredStrategy merge with any
    replica count, one included, except inside XLA-compiled code on devices
    that are all GPUs. Other strategies never merge.

    Args:
        strategy: a `tf.distribute.Strategy`.
        xla: None to read TF's own flag for the graph being traced (while an
            attack is traced); True or False to predict it before anything is
            traced: whether the attack will be XLA-compiled.

    Returns:
        A bool.
    """
    if not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        return False
    if xla is None:
        # Private, so read defensively: without it, assume the merge_call that every TF release so far uses.
        return bool(getattr(strategy.extended, "_use_merge_call", lambda: True)())
    gpus = all(tf.DeviceSpec.from_string(d).device_type == "GPU" for d in strategy.extended.worker_devices)
    return not (xla and gpus)


def refuse_synchronized_batch_stats(model, strategy, cause=None):
    """Raises the error of `check_batch_stats_under_strategy` if `model` has synchronized BatchNorm.

    Args:
        model: a Keras model (anything else has nothing to synchronise).
        strategy: the strategy named in the message.
        cause: the exception this one replaces, if any (kept as `__cause__`).

    Raises:
        ValueError: naming the first synchronized layer and the ways out.
    """
    if not hasattr(model, "_flatten_layers"):  # not a Keras model: nothing to synchronise
        return
    from tfrobust.models import normalization

    synced = [layer.path for layer in normalization.batch_norm_layers(model) if layer.synchronized]
    if synced:
        raise ValueError(
            f"Batch statistics (an attack's bn='batch_stats', or an evaluation with --bn batch_stats) cannot "
            f"be used under {type(strategy).__name__} on a model with synchronized BatchNormalization "
            f"({synced[0]!r} and {len(synced) - 1} more): an attack's loop cannot all-reduce batch statistics. "
            "Use the attack's bn='inference', run without the strategy (--strategy default), or unsynchronised "
            "BatchNorm (model.sync_bn=false), whose batch statistics are per replica."
        ) from cause


def number(name, value):
    """`value` as a float, or a TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
    return float(value)


def check_images(x):
    """Checks the pixel contract: float32 NHWC in [0, 1] (range checked when eager)."""
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:
        raise TypeError(
            "Attack inputs must be float32 images in [0, 1] (convert uint8 with "
            f"x / 255). Received: x.dtype={x.dtype.name}"
        )
    if x.shape.rank != 4:
        raise ValueError(
            f"Attack inputs must be NHWC, rank 4. Received: x.shape={x.shape}"
        )
    if tf.executing_eagerly() and x.shape[0]:
        lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                "Attack inputs must lie in [0, 1]. "
                f"Received: x with min={lo:.4g}, max={hi:.4g}"
            )
    return x
