"""PreActResNet-18 (He et al. 2016, identity mappings)."""

import keras

from tfrobust.models.conv import conv2d
from tfrobust.models.normalization import Normalize, default_batch_norm


def preact_resnet18(input_shape=(32, 32, 3), num_classes=10, mean=None, std=None, batch_norm=None):
    """PreActResNet-18 from He et al., "Identity mappings in deep residual networks".

    arXiv 1603.05027. A 3x3 stem convolution, then four stages of two
    pre-activation basic blocks (BN - ReLU - conv, twice) with 64, 128, 256
    and 512 filters, then BN - ReLU, global average pooling and one dense
    layer: the CIFAR-10 model of Wong et al. (arXiv 2001.03994) and Rice et
    al. (arXiv 2002.11569), 11.17M parameters. Where a block changes the
    shape, the shortcut is a 1x1 convolution of the pre-activated input.

    Layers are named `stem_conv`, `s{stage}b{block}_*` (e.g. `s2b1_bn1`,
    `s2b1_proj`), `final_bn`, `pool` and `logits`.

    Args:
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.
        batch_norm: callable `name -> layer` creating each BatchNorm layer;
            None means `BatchNormalization(momentum=0.9, epsilon=1e-5)`.

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    bn = batch_norm or default_batch_norm
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = conv2d(64, 3, 1, "stem_conv")(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            out = keras.layers.ReLU(name=p + "relu1")(bn(p + "bn1")(x))
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv2d(filters, 1, stride, p + "proj")(out)
            y = conv2d(filters, 3, stride, p + "conv1")(out)
            y = keras.layers.ReLU(name=p + "relu2")(bn(p + "bn2")(y))
            y = conv2d(filters, 3, 1, p + "conv2")(y)
            x = keras.layers.Add(name=p + "add")([shortcut, y])
    x = keras.layers.ReLU(name="final_relu")(bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="preact_resnet18")
