"""Stateless augmentation: sampling the parameters is kept apart from applying them.

`sample(seed, ...)` draws one element's crop offsets, flip bit and cutout centre
from its seed with `tf.random.stateless_uniform`; `apply(image, params, ...)` is
deterministic. Keeping them apart lets the legacy pipeline mode feed the sampler
the seeds that the PyTorch worker-seeding bug would have produced, and lets
tests compare parameters directly.

Augmentations: pad-and-crop and horizontal flip (the standard CIFAR recipe), and
cutout (DeVries & Taylor, "Improved Regularization of Convolutional Neural
Networks with Cutout", arXiv 1708.04552).
"""

import numbers

import tensorflow as tf


def _check(pad, cutout):
    for name, value in (("pad", pad), ("cutout", cutout)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be an int >= 0. Received: {name}={value!r}")


def sample(seed, image_shape, pad=4, flip=True, cutout=0):
    """Draws one element's augmentation parameters from its seed.

    Args:
        seed: int32 tensor `[2]`, the element's augmentation seed.
        image_shape: tuple (H, W, C).
        pad: int, zero padding before the random crop back to (H, W);
            0 disables the crop.
        flip: bool, draw a left-right flip with probability 1/2.
        cutout: int, side of the square to erase; 0 disables it.

    Returns:
        A dict of int32 scalars: `dy`, `dx` (crop offsets in the padded
        image, in [0, 2 * pad]), `flip` (0 or 1), `cy`, `cx` (cutout centre,
        anywhere in the image). Disabled parts are 0.
    """
    _check(pad, cutout)
    h, w = int(image_shape[0]), int(image_shape[1])
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 5)

    def draw(k, high):
        return tf.random.stateless_uniform([], s[k], 0, high, dtype=tf.int32)

    zero = tf.constant(0, tf.int32)
    return {
        "dy": draw(0, 2 * pad + 1) if pad else zero,
        "dx": draw(1, 2 * pad + 1) if pad else zero,
        "flip": draw(2, 2) if flip else zero,
        "cy": draw(3, h) if cutout else zero,
        "cx": draw(4, w) if cutout else zero,
    }


def apply(image, params, pad=4, cutout=0):
    """Applies sampled parameters to one image.

    Zero-pads by `pad` and crops back to the original size at (`dy`, `dx`),
    flips left-right if `flip` is 1, then zeroes a `cutout` x `cutout` square
    centred at (`cy`, `cx`) (rows `cy - cutout // 2` to
    `cy - cutout // 2 + cutout - 1`), clipped at the borders, as in DeVries &
    Taylor (for an odd `cutout` their code erases one row and column less).

    Args:
        image: float32 tensor `[H, W, C]` in [0, 1], with a static shape.
        params: dict from `sample`, drawn with the same `pad` and `cutout`.
        pad: int, as given to `sample`.
        cutout: int, as given to `sample`.

    Returns:
        float32 tensor `[H, W, C]`.
    """
    _check(pad, cutout)
    h, w, c = image.shape
    if pad:
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.slice(padded, tf.stack([params["dy"], params["dx"], 0]), [h, w, c])
    image = tf.where(params["flip"] > 0, tf.reverse(image, [1]), image)
    if cutout:
        top = params["cy"] - cutout // 2
        left = params["cx"] - cutout // 2
        rows = tf.range(h)[:, None]
        cols = tf.range(w)[None, :]
        inside = (rows >= top) & (rows < top + cutout) & (cols >= left) & (cols < left + cutout)
        image = tf.where(inside[:, :, None], tf.zeros_like(image), image)
    return image
