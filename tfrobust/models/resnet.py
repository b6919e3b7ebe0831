"""CIFAR ResNets (He et al. 2016)."""

import keras

from tfrobust.models.conv import conv2d
from tfrobust.models.normalization import Normalize, default_batch_norm


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, mean=None, std=None, batch_norm=None):
    """The CIFAR ResNet of He et al., "Deep residual learning for image recognition".

    arXiv 1512.03385, Section 4.2: a 3x3 stem convolution, then three stages
    of n = (depth - 2) / 6 basic blocks (two 3x3 convolutions with BatchNorm)
    with 16, 32 and 64 filters, the first block of stages 2 and 3 having
    stride 2; global average pooling and one dense layer. Where a block
    changes the shape, the shortcut is a 1x1 convolution plus BatchNorm (the
    paper's option B, not its zero-padding option A); elsewhere it is the
    identity. ResNet-20 has 0.27M parameters.

    Layers are named `stem_*`, `s{stage}b{block}_*` (e.g. `s2b1_conv1`,
    `s2b1_proj_bn`), `pool` and `logits`.

    Args:
        depth: 6n + 2 with n >= 1: 20, 32, 44, 56, 110, ...
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.
        batch_norm: callable `name -> layer` creating each BatchNorm layer;
            None means `BatchNormalization(momentum=0.9, epsilon=1e-5)`.

    Returns:
        A `keras.Model` from [0, 1] images to logits.

    Raises:
        ValueError: if depth is not 6n + 2.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...). "
                         f"Received: depth={depth!r}")
    bn = batch_norm or default_batch_norm
    n = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(bn("stem_bn")(conv2d(16, 3, 1, "stem_conv")(x)))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            y = keras.layers.ReLU(name=p + "relu1")(bn(p + "bn1")(conv2d(filters, 3, stride, p + "conv1")(x)))
            y = bn(p + "bn2")(conv2d(filters, 3, 1, p + "conv2")(y))
            if stride != 1 or x.shape[-1] != filters:
                x = bn(p + "proj_bn")(conv2d(filters, 1, stride, p + "proj")(x))
            x = keras.layers.ReLU(name=p + "out")(keras.layers.Add(name=p + "add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")
