"""Stateless per-element seeds and a counter-based RNG keyed by them.

Every random choice in tfrobust (augmentation, shuffling, attack random starts)
is a pure function of a per-element seed, and that seed is a pure function of
(global seed, epoch, element index). Nothing depends on the number of replicas,
workers or the order in which `tf.data` runs its parallel calls, so a rerun is
bitwise identical and a resumed run can skip to any batch.

Seeds are int32 tensors of shape `[2]` (one element) or `[B, 2]` (a batch), the
format of `tf.random.stateless_*`.
"""

import tensorflow as tf

SEED_DTYPE = tf.int32

# Salts keep the streams for different purposes apart: the augmentation of an
# element and the random start of its attack must not be correlated.
AUGMENT_SALT = 1
ATTACK_SALT = 2
SHUFFLE_SALT = 3
# The legacy augmentation mode (`pipelines.train_dataset(augment="legacy")`)
# draws from a stream keyed by (global seed, draw index) alone; its own salt
# keeps that stream apart from every per-element one.
LEGACY_AUGMENT_SALT = 4
# Copy c > 0 of a repeated element (`train_dataset(repeats=k)`) gets the seed
# `derive(derive(s, REPEAT_SALT), c)`; copy 0 keeps the element's own seed.
REPEAT_SALT = 5


def epoch_seed(global_seed, epoch):
    """Returns the seed of one epoch, shape `[2]`.

    Args:
        global_seed: int, the run's seed.
        epoch: int or scalar tensor, zero-based epoch.
    """
    base = tf.constant([0, 0], SEED_DTYPE) + tf.cast(
        tf.stack([global_seed, 0]), SEED_DTYPE
    )
    folded = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.cast(folded, SEED_DTYPE)


def element_seed(global_seed, epoch, index):
    """Returns the seed of one element, `fold_in(fold_in([seed, 0], epoch), index)`.

    Args:
        global_seed: int, the run's seed.
        epoch: int or scalar tensor, zero-based epoch.
        index: int or scalar tensor, the element's index in the dataset
            (its position in the source arrays, not in the shuffled order).

    Returns:
        An int32 tensor of shape `[2]`.
    """
    folded = tf.random.experimental.stateless_fold_in(
        epoch_seed(global_seed, epoch), tf.cast(index, tf.int64)
    )
    return tf.cast(folded, SEED_DTYPE)


def derive(seed, salt):
    """Returns an independent seed for one purpose (e.g. `ATTACK_SALT`).

    Works on a single seed `[2]` or a batch `[B, 2]`. `salt` is an int or an
    integer tensor (e.g. a loop counter, for a fresh seed per iteration).
    """
    seed = tf.convert_to_tensor(seed, SEED_DTYPE)
    salt = tf.convert_to_tensor(salt)
    if salt.dtype != tf.uint32:
        salt = tf.cast(tf.cast(salt, tf.int64), tf.uint32)
    return _hash_pair(seed, salt)


def _mix32(x):
    # "lowbias32" integer finaliser (C. Wellons): a cheap bijection on uint32
    # with good avalanche, built from ops that every backend and XLA support
    # with identical results. tf.random.stateless_* does not vectorise over a
    # batch of seeds and picks a different algorithm under XLA.
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _key(seed):
    s = tf.bitcast(tf.convert_to_tensor(seed, SEED_DTYPE), tf.uint32)
    return _mix32(
        tf.bitwise.bitwise_xor(
            s[..., 0], _mix32(s[..., 1] + tf.constant(0x9E3779B9, tf.uint32))
        )
    )


def _hash_pair(seed, salt):
    key = _key(seed)
    a = _mix32(tf.bitwise.bitwise_xor(key, _mix32(salt + key)))
    b = _mix32(a + tf.constant(0x632BE5AB, tf.uint32))
    return tf.bitcast(tf.stack([a, b], axis=-1), SEED_DTYPE)


def _bits(seeds, shape):
    seeds = tf.convert_to_tensor(seeds, SEED_DTYPE)
    size = 1
    for d in shape:
        size *= int(d)
    key = _key(seeds)[:, None]
    counter = tf.bitcast(tf.range(size, dtype=tf.int32), tf.uint32)[None, :]
    bits = _mix32(tf.bitwise.bitwise_xor(key, _mix32(counter + key)))
    return tf.reshape(bits, tf.concat([tf.shape(seeds)[:1], list(shape)], 0))


def uniform(seeds, shape, minval=0.0, maxval=1.0):
    """Per-element uniform noise: row i depends only on `seeds[i]`.

    Identical on CPU, GPU, TPU and under XLA, and independent of the batch it
    sits in, so an element gets the same noise on any number of replicas.

    Args:
        seeds: int32 tensor `[B, 2]`.
        shape: static per-element shape, e.g. `(28, 28, 1)`.
        minval: float, inclusive lower bound.
        maxval: float, exclusive upper bound.

    Returns:
        float32 tensor `[B, *shape]`.
    """
    u = tf.cast(tf.bitwise.right_shift(_bits(seeds, shape), 8), tf.float32)
    u = u * (2.0**-24)
    return minval + (maxval - minval) * u


def normal(seeds, shape):
    """Per-element standard normal noise (Box-Muller); see `uniform`."""
    seeds = tf.convert_to_tensor(seeds, SEED_DTYPE)
    u1 = uniform(derive(seeds, 11), shape)
    u2 = uniform(derive(seeds, 12), shape)
    # 1 - u1 is in (0, 1], so the log is finite.
    r = tf.sqrt(-2.0 * tf.math.log(1.0 - u1))
    return r * tf.cos(2.0 * 3.141592653589793 * u2)
