"""Stateless augmentation: sampling the parameters is kept apart from applying them.

`sample(seed, ...)` draws an element's crop offsets, flip bit and cutout centre
from its seed with `tf.random.stateless_uniform`; `apply(image, params, ...)`
is deterministic. Keeping them apart lets the legacy mode feed the same sampler
with the seeds the PyTorch bug would have produced, and lets tests inspect the
parameters directly.
"""

import tensorflow as tf


def sample(seed, image_shape, pad=4, flip=True, cutout=0):
    """Draws one element's augmentation parameters from its seed.

    Args:
        seed: int32 `[2]`, the element's augmentation seed.
        image_shape: (H, W, C).
        pad: zero padding before the random crop back to (H, W); 0 disables.
        flip: draw a horizontal flip with probability 1/2.
        cutout: side of the square to erase (DeVries & Taylor, "Improved
            regularization of convolutional neural networks with cutout",
            arXiv 1708.04552); 0 disables.

    Returns:
        A dict of int32 scalars: `dy`, `dx` (crop offsets in [0, 2 * pad]),
        `flip` (0 or 1), `cy`, `cx` (cutout centre).
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 4)
    draw = lambda k, hi: tf.random.stateless_uniform([], s[k], 0, hi, dtype=tf.int32)  # noqa: E731
    return {
        "dy": draw(0, 2 * pad + 1),
        "dx": draw(1, 2 * pad + 1),
        "flip": draw(2, 2) if flip else tf.constant(0),
        "cy": draw(3, h) if cutout else tf.constant(0),
        "cx": tf.random.stateless_uniform([], tf.reverse(s[3], [0]), 0, w, dtype=tf.int32)
        if cutout else tf.constant(0),
    }


def apply(image, params, pad=4, cutout=0):
    """Applies sampled parameters to one float32 HWC image in [0, 1].

    Zero-pads by `pad`, crops back to the original size at (dy, dx), flips
    left-right if `flip`, then zeroes a `cutout` x `cutout` square centred at
    (cy, cx), clipped at the borders.
    """
    h, w, c = image.shape
    if pad:
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.slice(padded, tf.stack([params["dy"], params["dx"], 0]), [h, w, c])
    image = tf.cond(params["flip"] > 0, lambda: tf.reverse(image, [1]), lambda: image)
    if cutout:
        ys = tf.range(h)[:, None]
        xs = tf.range(w)[None, :]
        half = cutout // 2
        inside = (ys >= params["cy"] - half) & (ys < params["cy"] - half + cutout) & \
                 (xs >= params["cx"] - half) & (xs < params["cx"] - half + cutout)
        image = image * tf.cast(~inside, image.dtype)[:, :, None]
    return image
