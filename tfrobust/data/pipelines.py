"""tf.data pipelines with stateless per-element seeds.

Every element of a batch is `({"image": float32 [H, W, C] in [0, 1],
"seed": int32 [2]}, int64 label)`. For the element with source index i in
epoch e, `s = seeds.element_seed(seed, e, i)`; its augmentation is drawn from
`derive(s, AUGMENT_SALT)` and the batch carries `derive(s, ATTACK_SALT)` for the
attack's random start. The epoch's order is a stateless permutation from
(seed, e). Nothing depends on the number of replicas, workers, or the order in
which parallel map calls finish, so a rerun is bitwise identical and a resumed
run can start at any batch.
"""

import numpy as np
import tensorflow as tf

from tfrobust.data import augment as augment_lib
from tfrobust.data import seeds as seeds_lib

AUGMENT_MODES = ("none", "fixed", "legacy")


def steps_per_epoch(n, batch_size):
    """Full batches per epoch (training drops the remainder)."""
    return int(n) // int(batch_size)


def _validate(images, labels, batch_size):
    if not isinstance(images, np.ndarray):
        images = np.asarray(images)
    if images.dtype not in (np.uint8, np.float32):
        raise TypeError(f"images must be uint8 or float32 in [0, 1]. Received: images.dtype={images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC, rank 4. Received: images.shape={images.shape}")
    if images.dtype == np.float32 and images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"float32 images must lie in [0, 1]. "
                         f"Received: images min={images.min():.4g}, max={images.max():.4g}")
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"labels must have one entry per image. "
                         f"Received: {len(labels)} labels for {len(images)} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers. Received: labels.dtype={labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0. Received: labels min={labels.min()}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    return images, labels.astype(np.int64)


def _to_float(image):
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return image


def train_dataset(images, labels, *, batch_size, seed, augment="none", pad=4, flip=True, cutout=0,
                  start_epoch=0, start_step=0, legacy_workers=4):
    """An infinite training pipeline: epochs follow each other; pass `steps_per_epoch` to `fit`.

    Args:
        images: uint8 (or float32 in [0, 1]) array `[N, H, W, C]`.
        labels: int array `[N]`.
        batch_size: the global batch size; the remainder of each epoch is
            dropped, so every epoch has `N // batch_size` batches.
        seed: int, the run's global seed.
        augment: "none"; "fixed" (pad-and-crop, flip and optional cutout from
            stateless per-element seeds); or "legacy", which reproduces the
            PyTorch+NumPy worker-seeding bug (Suri, "Reassessing adversarial
            training with fixed data augmentation"): each DataLoader worker
            forks with the same NumPy RNG state and is re-forked every epoch,
            so the k-th draw of every worker is the same in every epoch. Here
            the element at position p of an epoch (batch b = p // batch_size,
            that worker's local batch b // legacy_workers) gets augmentation
            seed f(seed, k) with k = (b // legacy_workers) * batch_size +
            p % batch_size: batches 0 .. legacy_workers-1 share parameters,
            and position p gets the same parameters every epoch. The shuffle
            order and attack seeds stay as in "fixed", so an ablation changes
            only the augmentation.
        pad, flip, cutout: the augmentation (see `augment.sample`).
        start_epoch, start_step: where to begin, for an exact resume. The
            skipped elements are never computed.
        legacy_workers: the number of DataLoader workers the legacy mode imitates.

    Returns:
        A `tf.data.Dataset` of `({"image", "seed"}, label)` batches.
    """
    images, labels = _validate(images, labels, batch_size)
    if augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {AUGMENT_MODES}. Received: augment={augment!r}")
    if legacy_workers < 1:
        raise ValueError(f"legacy_workers must be >= 1. Received: legacy_workers={legacy_workers}")
    n = len(labels)
    steps = steps_per_epoch(n, batch_size)
    if steps < 1:
        raise ValueError(f"batch_size must not exceed the number of examples ({n}). "
                         f"Received: batch_size={batch_size}")
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step must be in [0, {steps}). Received: start_step={start_step}")
    used = steps * batch_size
    images_t = tf.constant(images)
    labels_t = tf.constant(labels)
    shape = images.shape[1:]

    def epoch_elements(epoch):
        shuffle_seed = seeds_lib.derive(seeds_lib.epoch_seed(seed, epoch), seeds_lib.SHUFFLE_SALT)
        order = tf.argsort(tf.random.stateless_uniform([n], shuffle_seed))[:used]
        first = tf.where(epoch == start_epoch, start_step * batch_size, 0)
        positions = tf.range(first, used)
        order = order[first:]
        epochs = tf.fill(tf.shape(positions), epoch)
        return tf.data.Dataset.from_tensor_slices((epochs, positions, order))

    def element(epoch, position, index):
        s = seeds_lib.element_seed(seed, epoch, index)
        image = _to_float(tf.gather(images_t, index))
        if augment != "none":
            if augment == "legacy":
                b = position // batch_size
                k = (b // legacy_workers) * batch_size + position % batch_size
                aug_seed = tf.cast(tf.random.experimental.stateless_fold_in(
                    tf.constant([seed, 1], seeds_lib.SEED_DTYPE), tf.cast(k, tf.int64)), seeds_lib.SEED_DTYPE)
            else:
                aug_seed = seeds_lib.derive(s, seeds_lib.AUGMENT_SALT)
            params = augment_lib.sample(aug_seed, shape, pad=pad, flip=flip, cutout=cutout)
            image = augment_lib.apply(image, params, pad=pad, cutout=cutout)
        image = tf.ensure_shape(image, shape)
        return {"image": image, "seed": seeds_lib.derive(s, seeds_lib.ATTACK_SALT)}, tf.gather(labels_t, index)

    ds = tf.data.Dataset.counter(start_epoch, dtype=tf.int64).flat_map(epoch_elements)
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, labels, *, batch_size, seed=0, n=None):
    """A finite evaluation pipeline over the first `n` examples, in order, unaugmented.

    Seeds are `derive(element_seed(seed, 0, i), ATTACK_SALT)`, so an example's
    random start does not depend on the batch size.
    """
    images, labels = _validate(images, labels, batch_size)
    n = len(labels) if n is None else min(int(n), len(labels))
    images_t = tf.constant(images[:n])
    labels_t = tf.constant(labels[:n])

    def element(index):
        s = seeds_lib.element_seed(seed, 0, index)
        image = _to_float(tf.gather(images_t, index))
        return {"image": image, "seed": seeds_lib.derive(s, seeds_lib.ATTACK_SALT)}, tf.gather(labels_t, index)

    ds = tf.data.Dataset.range(n).map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
