"""1-SSIM between clean and adversarial images: a perceptual size of an attack.

Prabhu et al., "Understanding adversarial robustness through loss landscape
geometries", arXiv 1907.09061, Table 2, report `1 - SSIM` between clean and
adversarial images to compare attacks whose budgets live in different units
(pixel-value norms for PGD, a flow bound for stAdv).
"""

import tensorflow as tf

# The standard parameters of Wang et al. (2004), which tf.image.ssim defaults to.
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def window_size(height, width, filter_size=FILTER_SIZE):
    """The Gaussian window used on `height x width` images.

    `filter_size` when the image holds it; otherwise the largest odd size that
    fits (7 for 8x8 images), so the window stays centred on a pixel.
    """
    size = min(int(filter_size), int(height), int(width))
    return size if size % 2 == 1 or size == filter_size else size - 1


def ssim_distance(x, x_adv, max_val=1.0, filter_size=FILTER_SIZE, filter_sigma=FILTER_SIGMA, k1=K1, k2=K2):
    """Per-example `1 - SSIM(x, x_adv)`, in [0, 2]; 0 for identical images.

    SSIM is Wang et al., "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 2004, computed by `tf.image.ssim` with
    their standard parameters: an 11x11 Gaussian window of sigma 1.5,
    `k1 = 0.01`, `k2 = 0.03`, `max_val = 1` (images in [0, 1]). The local SSIM
    map is taken over every 'VALID' window position (no padding) and
    averaged over positions.

    Small images: `tf.image.ssim` needs the image to hold the window. For
    images smaller than `filter_size` the window shrinks to the largest odd
    size that fits (see `window_size`; 7x7 for 8x8 images) with the same
    sigma, so values on tiny test images are comparable in kind but not
    equal to those of an 11x11 window.

    Channels: SSIM is defined on grey-level images; like `tf.image.ssim`,
    this computes it per channel (no colour transform) and averages the
    channels with equal weights.

    Symmetric in its arguments. Values are clipped to [0, 2], which only
    removes rounding error: SSIM lies in [-1, 1].

    Args:
        x: float `[B, H, W, C]` clean images in [0, max_val].
        x_adv: float `[B, H, W, C]` images of the same shape.
        max_val: the dynamic range of the pixels. Default 1.0.
        filter_size: the Gaussian window's side. Default 11.
        filter_sigma: the Gaussian's standard deviation, pixels. Default 1.5.
        k1, k2: SSIM's stabilising constants. Defaults 0.01 and 0.03.

    Returns:
        float32 `[B]`.

    Raises:
        ValueError: for inputs that are not rank 4, differ in shape, or have
            unknown height or width.
    """
    x = tf.convert_to_tensor(x)
    x_adv = tf.convert_to_tensor(x_adv)
    if x.shape.rank != 4 or x_adv.shape.rank != 4:
        raise ValueError(
            f"ssim_distance expects [B, H, W, C] images. Received: x.shape={x.shape}, "
            f"x_adv.shape={x_adv.shape}"
        )
    if not x.shape[1:].is_compatible_with(x_adv.shape[1:]):
        raise ValueError(
            f"x and x_adv must have the same shape. Received: x.shape={x.shape}, x_adv.shape={x_adv.shape}"
        )
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        height, width = x_adv.shape[1], x_adv.shape[2]
    if height is None or width is None:
        raise ValueError(f"ssim_distance needs a static height and width. Received: x.shape={x.shape}")
    x = tf.cast(x, tf.float32)
    x_adv = tf.cast(x_adv, tf.float32)
    ssim = tf.image.ssim(
        x,
        x_adv,
        max_val=float(max_val),
        filter_size=window_size(height, width, filter_size),
        filter_sigma=float(filter_sigma),
        k1=float(k1),
        k2=float(k2),
    )
    return tf.clip_by_value(1.0 - ssim, 0.0, 2.0)


def mean_ssim_distance(x, x_adv, **kwargs):
    """The batch mean of `ssim_distance(x, x_adv, **kwargs)`, a float32 scalar."""
    return tf.reduce_mean(ssim_distance(x, x_adv, **kwargs))
