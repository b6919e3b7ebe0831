"""tf.data pipelines with stateless per-element seeds.

Every pipeline yields `(features, labels)` batches with
`features = {"image": float32 [B, H, W, C] in [0, 1], "seed": int32 [B, 2]}` and
int64 labels `[B]` (docs/contracts.md).

For the element with source index i (its position in the arrays) in epoch e,
`s = seeds.element_seed(seed, e, i)`. Its augmentation is drawn from
`derive(s, AUGMENT_SALT)` and the batch carries `derive(s, ATTACK_SALT)` for the
attack's random start. An epoch's order is a stateless permutation keyed by
`derive(epoch_seed(seed, e), SHUFFLE_SALT)`. Nothing depends on the number of
replicas, on tf.data's parallelism or on the order in which parallel map calls
finish, so a rerun is bitwise identical, and a resumed run can start at any
batch without computing the ones before it.

Augmentation modes of `train_dataset`:

- `"none"`: no augmentation.
- `"fixed"`: pad-and-crop, flip and optional cutout, drawn from each
  element's own seed `derive(element_seed(seed, epoch, index),
  AUGMENT_SALT)`. Every element of every epoch gets fresh parameters.
- `"legacy"`: an ablation that reproduces the PyTorch/NumPy worker-seeding
  bug (Suri, "Reassessing adversarial training with fixed data
  augmentation"). PyTorch forks its DataLoader workers with one and the
  same NumPy RNG state, and forks them again each epoch, so (a) the
  workers produce identical augmentation streams and (b) the streams
  restart identically every epoch. Here, the element at position p of an
  epoch gets the parameters of draw k = `legacy_draw_index(p, batch_size,
  legacy_workers)` from one stream keyed by `seed` alone: they depend on
  neither the worker, the epoch nor the image. With 4 workers batches
  0, 1, 2 and 3 get identical parameters, and position p gets the same
  parameters in every epoch. The shuffle order and the attack seeds are
  those of `"fixed"`, so comparing the two modes changes the augmentation
  randomness only.

Repeated augmentation (`train_dataset(repeats=k)`): each batch holds `batch_size // k`
distinct examples, each k times in a row, every copy with its own
augmentation and attack seed (copy 0 keeps the element's seed, copy c > 0
uses `derive(derive(s, REPEAT_SALT), c)`). Hoffer et al., "Augment your
batch", arXiv 1901.09335; Gowal et al.'s code emulates 4 workers this way
(a batch of 1024 holds 256 images). An epoch is still one pass over the
distinct examples, so it has k times as many batches.
"""

import numbers

import numpy as np
import tensorflow as tf

from tfrobust.data import augment as augment_lib
from tfrobust import seeds as seeds_lib

AUGMENT_MODES = ("none", "fixed", "legacy")


def steps_per_epoch(n, batch_size):
    """The number of batches in one training epoch of `n` examples.

    Training drops the remainder, so this is `n // batch_size`.
    """
    return int(n) // int(batch_size)


def legacy_draw_index(position, batch_size, legacy_workers):
    """The draw index k that the legacy mode keys an element's augmentation on.

    Position p of an epoch is in batch b = p // batch_size, which PyTorch's
    DataLoader gives to worker b % legacy_workers as that worker's local batch
    b // legacy_workers; it is the worker's k-th random draw, with
    k = (b // legacy_workers) * batch_size + p % batch_size.

    Args:
        position: int or int tensor, the element's position in the epoch.
        batch_size: int.
        legacy_workers: int, the number of DataLoader workers imitated.
    """
    batch = position // batch_size
    return (batch // legacy_workers) * batch_size + position % batch_size


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name, value, low, high=None):
    if not _is_int(value) or value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be an int {bound}. Received: {name}={value!r}")


def _validate(images, labels, batch_size, seed):
    images = np.asarray(images)
    if images.dtype not in (np.uint8, np.float32):
        raise TypeError("images must be uint8 (0..255) or float32 in [0, 1]. "
                        f"Received: images.dtype={images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC, rank 4. Received: images.shape={images.shape}")
    if images.dtype == np.float32 and images.size:
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(f"float32 images must lie in [0, 1]. Received: images min={lo:.4g}, max={hi:.4g}")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers. Received: labels.dtype={labels.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must have shape [N], one per image. "
                         f"Received: labels.shape={labels.shape} for {len(images)} images")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0. Received: labels min={labels.min()}")
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, -(2**31), 2**31)
    return images, labels.astype(np.int64)


def _to_float(image):
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return image


def _check_train_arguments(images, labels, batch_size, seed, augment, pad, flip, cutout, start_epoch, start_step,
                           legacy_workers, repeats):
    """`train_dataset`'s arguments checked: (images, labels, distinct examples per batch, steps per epoch)."""
    images, labels = _validate(images, labels, batch_size, seed)
    if augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {AUGMENT_MODES}. Received: augment={augment!r}")
    _check_int("pad", pad, 0)
    _check_int("cutout", cutout, 0)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be a bool. Received: flip={flip!r}")
    _check_int("legacy_workers", legacy_workers, 1)
    _check_int("start_epoch", start_epoch, 0)
    distinct = _distinct_per_batch(batch_size, repeats)
    if repeats > 1 and augment == "legacy":
        raise ValueError(f"repeats > 1 does not combine with augment='legacy'. Received: repeats={repeats}")
    n = len(labels)
    steps = steps_per_epoch(n, distinct)
    if steps < 1:
        raise ValueError(f"batch_size // repeats must not exceed the number of examples ({n}). "
                         f"Received: batch_size={batch_size}, repeats={repeats}")
    _check_int("start_step", start_step, 0, steps)
    return images, labels, distinct, steps


def train_dataset(images, labels, *, batch_size, seed, augment="none", pad=4, flip=True, cutout=0,
                  start_epoch=0, start_step=0, legacy_workers=4, repeats=1):
    """An infinite training pipeline: epoch after epoch; pass `steps_per_epoch` to `fit`.

    Each epoch is a fresh stateless permutation of the examples, cut into
    `steps_per_epoch(N, batch_size // repeats)` full batches (the remainder is
    dropped). Images stay uint8 until the parallel map, which scales them to
    [0, 1] and augments them (the modes: the module's docstring).

    Args:
        images: uint8 array `[N, H, W, C]` (or float32 in [0, 1]).
        labels: int array `[N]`.
        batch_size: int, the global batch size (split across replicas by
            `tf.distribute`).
        seed: int, the run's global seed (int32 range).
        augment: str, "none", "fixed" or "legacy" (see the module docstring).
        pad: int, pad before the random crop (see `augment.sample`).
        flip: bool, random left-right flips.
        cutout: int, side of the cutout square; 0 disables it.
        start_epoch: int, the first epoch to produce, for a resumed run.
        start_step: int, the first batch of `start_epoch` to produce (skipped
            batches cost nothing: the epoch's permutation is sliced).
        legacy_workers: int, the DataLoader workers the legacy mode imitates.
        repeats: int, copies of each example per batch (1: none); divides
            `batch_size`; not with `augment="legacy"`.

    Returns:
        An infinite `tf.data.Dataset` of `({"image", "seed"}, labels)` batches.

    Raises:
        ValueError, TypeError: a bad argument, named in the message.

    Example:

    >>> ds = train_dataset(x_uint8, y, batch_size=128, seed=0, augment="fixed")
    >>> model.fit(ds, epochs=10, steps_per_epoch=steps_per_epoch(len(y), 128))
    """
    images, labels, distinct, steps = _check_train_arguments(images, labels, batch_size, seed, augment, pad, flip,
                                                              cutout, start_epoch, start_step, legacy_workers, repeats)
    n, used = len(labels), steps * distinct
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    shape, flip = images.shape[1:], bool(flip)

    def epoch_elements(epoch):
        shuffle_seed = seeds_lib.derive(seeds_lib.epoch_seed(seed, epoch), seeds_lib.SHUFFLE_SALT)
        # argsort breaks ties by the lower index (it runs on top_k), so the
        # permutation is deterministic even where two keys are equal.
        order = tf.argsort(tf.random.stateless_uniform([n], shuffle_seed))[:used]
        first = tf.where(epoch == start_epoch, start_step * distinct, 0)
        positions = tf.range(first, used)
        epochs = tf.fill(tf.shape(positions), epoch)
        return tf.data.Dataset.from_tensor_slices((epochs, positions, order[first:]))

    def augment_seed(s, position):
        if augment == "legacy":
            k = legacy_draw_index(position, batch_size, legacy_workers)
            return seeds_lib.derive(seeds_lib.element_seed(seed, 0, k), seeds_lib.LEGACY_AUGMENT_SALT)
        return seeds_lib.derive(s, seeds_lib.AUGMENT_SALT)

    def element(epoch, position, index, copy=0):
        s = seeds_lib.element_seed(seed, epoch, index)
        if repeats > 1:
            s = tf.where(copy > 0, seeds_lib.derive(seeds_lib.derive(s, seeds_lib.REPEAT_SALT), copy), s)
        image = _to_float(tf.gather(images_t, index))
        if augment != "none":
            params = augment_lib.sample(augment_seed(s, position), shape, pad=pad, flip=flip, cutout=cutout)
            image = augment_lib.apply(image, params, pad=pad, cutout=cutout)
        image = tf.ensure_shape(image, shape)
        features = {"image": image, "seed": seeds_lib.derive(s, seeds_lib.ATTACK_SALT)}
        return features, tf.gather(labels_t, index)

    ds = tf.data.Dataset.counter(start_epoch, dtype=tf.int64).flat_map(epoch_elements)
    if repeats > 1:
        copies = tf.range(repeats, dtype=tf.int64)
        ds = ds.flat_map(lambda e, p, i: tf.data.Dataset.from_tensor_slices(
            (tf.fill([repeats], e), tf.fill([repeats], p), tf.fill([repeats], i), copies)))
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _distinct_per_batch(batch_size, repeats):
    _check_int("repeats", repeats, 1)
    if batch_size % repeats:
        raise ValueError(f"repeats must divide batch_size. Received: batch_size={batch_size}, repeats={repeats}")
    return batch_size // repeats


def eval_dataset(images, labels, *, batch_size, seed=0, n=None):
    """A finite evaluation pipeline over the first `n` examples, in order, unaugmented.

    The attack seed of example i is `derive(element_seed(seed, 0, i),
    ATTACK_SALT)`, so its random start does not depend on the batch size or
    the number of replicas. The last batch may be smaller.

    Args:
        images: uint8 array `[N, H, W, C]` (or float32 in [0, 1]).
        labels: int array `[N]`.
        batch_size: int, the global batch size.
        seed: int, the seed of the attack random starts.
        n: int or None, use the first `n` examples (all if None or if `n`
            exceeds N).

    Returns:
        A finite `tf.data.Dataset` of `({"image", "seed"}, labels)` batches.
    """
    images, labels = _validate(images, labels, batch_size, seed)
    if n is not None:
        _check_int("n", n, 0)
    n = len(labels) if n is None else min(int(n), len(labels))
    images_t = tf.constant(images[:n])
    labels_t = tf.constant(labels[:n])

    def element(index):
        s = seeds_lib.element_seed(seed, 0, index)
        features = {"image": _to_float(tf.gather(images_t, index)),
                    "seed": seeds_lib.derive(s, seeds_lib.ATTACK_SALT)}
        return features, tf.gather(labels_t, index)

    ds = tf.data.Dataset.range(n).map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


#: Offsets the generated stream's global seed, so that the generated image
#: at index i never shares its augmentation and attack seeds with real image i.
GENERATED_SEED_OFFSET = 0x2545F491


def split_batch(batch_size, generated_fraction):
    """(real, generated) examples per batch for a generated fraction in [0, 1]."""
    if not 0.0 <= float(generated_fraction) <= 1.0:
        raise ValueError(f"generated_fraction must be in [0, 1]. Received: generated_fraction={generated_fraction}")
    n_gen = int(round(batch_size * float(generated_fraction)))
    return batch_size - n_gen, n_gen


def mixed_steps_per_epoch(n_real, n_generated, batch_size, generated_fraction, repeats=1):
    """Batches per epoch of `mixed_train_dataset`: one pass over the real data (or the generated, if only it)."""
    b_real, b_gen = split_batch(_distinct_per_batch(batch_size, repeats), generated_fraction)
    return steps_per_epoch(n_real, b_real) if b_real else steps_per_epoch(n_generated, b_gen)


def mixed_train_dataset(images, labels, generated_images, generated_labels, *, batch_size, generated_fraction,
                        seed, start_epoch=0, start_step=0, repeats=1, **augment_kwargs):
    """Training batches that mix real and generated examples at a fixed ratio (Gowal et al.).

    Every batch holds `split_batch(batch_size, generated_fraction)` real and
    generated examples, real first. Each stream is a `train_dataset` of its
    own (its own stateless permutation per pass, its own seeds), so both are
    deterministic and resume at any step; an epoch is one pass over the real
    data, while the generated stream runs on across its own passes. Features
    carry a boolean `generated` flag per example (for generated-only label
    smoothing in `AdversarialModel`).

    Args:
        images, labels: the real data.
        generated_images, generated_labels: the generated data (uint8, int).
        batch_size: the global batch size.
        generated_fraction: share of generated examples per batch, 0 (real
            only) to 1 (generated only); Gowal et al. use 0.7.
        seed: the run's global seed.
        start_epoch, start_step: where a resumed run starts.
        repeats: copies of each example per batch (see `train_dataset`); the
            real:generated split is made on the distinct examples.
        **augment_kwargs: `augment`, `pad`, `flip`, `cutout`, `legacy_workers`
            of `train_dataset`, applied to both streams.

    Returns:
        An infinite `tf.data.Dataset` of `({"image", "seed", "generated"}, labels)`
        batches; pass `mixed_steps_per_epoch(...)` to `fit`.
    """
    b_real, b_gen = split_batch(_distinct_per_batch(batch_size, repeats), generated_fraction)
    steps = mixed_steps_per_epoch(len(labels), len(generated_labels), batch_size, generated_fraction, repeats)
    global_step = start_epoch * steps + start_step

    def stream(x, y, b, stream_seed, generated):
        epoch, step = divmod(global_step, steps_per_epoch(len(y), b))
        ds = train_dataset(x, y, batch_size=b * repeats, seed=stream_seed, start_epoch=epoch, start_step=step,
                           repeats=repeats, **augment_kwargs)

        def flag(features, y_batch):
            return dict(features, generated=tf.fill([b * repeats], generated)), y_batch

        return ds.map(flag)

    streams = []
    if b_real:
        streams.append(stream(images, labels, b_real, seed, False))
    if b_gen:
        gen_seed = (int(seed) + GENERATED_SEED_OFFSET) % (2**31 - 1)
        streams.append(stream(generated_images, generated_labels, b_gen, gen_seed, True))
    if len(streams) == 1:
        return streams[0]

    def concat(a, b):
        (fa, ya), (fb, yb) = a, b
        return {k: tf.concat([fa[k], fb[k]], 0) for k in fa}, tf.concat([ya, yb], 0)

    return tf.data.Dataset.zip(tuple(streams)).map(concat).prefetch(tf.data.AUTOTUNE)
