"""PreActResNet-18 (He et al. 2016, identity mappings)."""

import keras

from tfrobust.models.normalization import Normalize, default_batch_norm


def preact_resnet18(input_shape=(32, 32, 3), num_classes=10, mean=None, std=None, batch_norm=None):
    """PreActResNet-18 from He et al., "Identity mappings in deep residual networks".

    arXiv 1603.05027. Four stages of two pre-activation basic blocks (64, 128,
    256, 512 filters), as used by Wong et al. (arXiv 2001.03994) and Rice et
    al. (arXiv 2002.11569) for CIFAR-10; about 11.2M parameters.

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    bn = batch_norm or default_batch_norm
    conv = lambda f, k, s, name: keras.layers.Conv2D(  # noqa: E731
        f, k, strides=s, padding="same", use_bias=False, name=name)
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = conv(64, 3, 1, "stem_conv")(x)
    in_filters = 64
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            out = keras.layers.ReLU(name=p + "relu1")(bn(p + "bn1")(x))
            shortcut = x
            if stride != 1 or in_filters != filters:
                shortcut = conv(filters, 1, stride, p + "proj")(out)
            y = conv(filters, 3, stride, p + "conv1")(out)
            y = keras.layers.ReLU(name=p + "relu2")(bn(p + "bn2")(y))
            y = conv(filters, 3, 1, p + "conv2")(y)
            x = keras.layers.Add(name=p + "add")([shortcut, y])
            in_filters = filters
    x = keras.layers.ReLU(name="final_relu")(bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="preact_resnet18")
