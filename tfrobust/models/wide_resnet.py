"""Wide ResNets (Zagoruyko & Komodakis 2016), as used by Gowal et al."""

import keras

from tfrobust.models.normalization import Normalize, default_batch_norm

ACTIVATIONS = ("relu", "swish")


def wide_resnet(depth=28, width=10, activation="relu", input_shape=(32, 32, 3), num_classes=10,
                mean=None, std=None, batch_norm=None):
    """WRN-depth-width from Zagoruyko & Komodakis, "Wide residual networks".

    arXiv 1605.07146. Pre-activation blocks, three stages of (depth - 4) / 6
    blocks with 16k, 32k and 64k filters. Gowal et al. ("Improving robustness
    using generated data", arXiv 2110.09468) use WRN-28-10 and WRN-70-16 with
    Swish.

    Args:
        depth: 6n + 4 (e.g. 16, 28, 34, 70).
        width: the widening factor k.
        activation: "relu" or "swish".

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 (16, 28, 34, 70, ...). Received: depth={depth!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}")
    bn = batch_norm or default_batch_norm
    act = lambda name: keras.layers.Activation(activation, name=name)  # noqa: E731
    conv = lambda f, k, s, name: keras.layers.Conv2D(  # noqa: E731
        f, k, strides=s, padding="same", use_bias=False, kernel_initializer="he_normal", name=name)
    n = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = conv(16, 3, 1, "stem_conv")(x)
    in_filters = 16
    for stage, base in enumerate((16, 32, 64)):
        filters = base * width
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            out = act(p + "act1")(bn(p + "bn1")(x))
            shortcut = x if (stride == 1 and in_filters == filters) else conv(filters, 1, stride, p + "proj")(out)
            y = conv(filters, 3, stride, p + "conv1")(out)
            y = conv(filters, 3, 1, p + "conv2")(act(p + "act2")(bn(p + "bn2")(y)))
            x = keras.layers.Add(name=p + "add")([shortcut, y])
            in_filters = filters
    x = act("final_act")(bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}_{activation}")
