"""Convolutions padded the way the papers' PyTorch code pads them."""

import keras


def conv2d(filters, kernel_size, strides, name, kernel_initializer="he_normal"):
    """A bias-free Conv2D with PyTorch's symmetric `padding=kernel_size // 2`.

    Keras's "same" padding with stride 2 on an even input pads only the
    bottom and right, so the sampling grid is shifted by one pixel relative to
    PyTorch's `Conv2d(..., stride=2, padding=1)`; weights ported from the
    papers' checkpoints would then compute something else. A strided odd
    kernel is therefore an explicit `ZeroPadding2D` (named `name + "_pad"`)
    followed by a valid convolution. Output sizes equal "same" padding.

    Args:
        filters: output channels.
        kernel_size: an odd int (1 or 3 here).
        strides: 1 or 2.
        name: the convolution's layer name.
        kernel_initializer: passed to `keras.layers.Conv2D`.

    Returns:
        A callable `tensor -> tensor`.
    """
    if strides == 1 or kernel_size == 1:
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                                   kernel_initializer=kernel_initializer, name=name)
    pad = keras.layers.ZeroPadding2D(kernel_size // 2, name=name + "_pad")
    conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", use_bias=False,
                               kernel_initializer=kernel_initializer, name=name)
    return lambda x: conv(pad(x))
