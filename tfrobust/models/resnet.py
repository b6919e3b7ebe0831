"""CIFAR ResNets (He et al. 2016)."""

import keras

from tfrobust.models.normalization import Normalize, default_batch_norm


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, mean=None, std=None, batch_norm=None):
    """The CIFAR ResNet of He et al., "Deep residual learning for image recognition".

    arXiv 1512.03385, Section 4.2: depth 6n+2, three stages of n basic blocks
    with 16, 32 and 64 filters, global average pooling and one dense layer.
    Where a block changes the shape, the shortcut is a 1x1 convolution with
    BatchNorm (the paper's option B); elsewhere it is the identity.

    Args:
        depth: 20, 32, 44, 56, 110, ... (6n + 2).
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.
        batch_norm: callable `name -> layer` creating each BatchNorm layer.

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 56, ...). Received: depth={depth!r}")
    bn = batch_norm or default_batch_norm
    n = (depth - 2) // 6
    conv = lambda f, s, name: keras.layers.Conv2D(  # noqa: E731
        f, 3, strides=s, padding="same", use_bias=False, kernel_initializer="he_normal", name=name)
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(bn("stem_bn")(conv(16, 1, "stem_conv")(x)))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            y = keras.layers.ReLU(name=p + "relu1")(bn(p + "bn1")(conv(filters, stride, p + "conv1")(x)))
            y = bn(p + "bn2")(conv(filters, 1, p + "conv2")(y))
            if stride != 1 or x.shape[-1] != filters:
                x = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                        kernel_initializer="he_normal", name=p + "proj")(x)
                x = bn(p + "proj_bn")(x)
            x = keras.layers.ReLU(name=p + "out")(keras.layers.Add(name=p + "add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")
