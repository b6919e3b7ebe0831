"""Wide ResNets (Zagoruyko & Komodakis 2016), as used by Gowal et al."""

import keras

from tfrobust.models.conv import conv2d
from tfrobust.models.normalization import Normalize, default_batch_norm

ACTIVATIONS = ("relu", "swish")


def wide_resnet(depth=28, width=10, activation="relu", input_shape=(32, 32, 3), num_classes=10,
                mean=None, std=None, batch_norm=None):
    """WRN-depth-width from Zagoruyko & Komodakis, "Wide residual networks".

    arXiv 1605.07146. A 3x3 stem convolution with 16 filters, then three
    stages of n = (depth - 4) / 6 pre-activation blocks (BN - activation -
    3x3 conv, twice) with 16k, 32k and 64k filters, then BN - activation,
    global average pooling and one dense layer. Where a block changes the
    shape, the shortcut is a 1x1 convolution of the pre-activated input.
    This is the layout of Gowal et al., "Uncovering the limits of adversarial
    training against norm-bounded adversarial examples" (arXiv 2010.03593)
    and "Improving robustness using generated data" (arXiv 2110.09468), who
    use Swish; WRN-28-10 has 36.5M parameters.

    Layers are named `stem_conv`, `s{stage}b{block}_*` (e.g. `s2b1_act1`,
    `s2b1_proj`), `final_bn`, `pool` and `logits`.

    Args:
        depth: 6n + 4 with n >= 1 (10, 16, 28, 34, 70, ...).
        width: the widening factor k, an int >= 1.
        activation: "relu" or "swish".
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.
        batch_norm: callable `name -> layer` creating each BatchNorm layer;
            None means `BatchNormalization(momentum=0.9, epsilon=1e-5)`.

    Returns:
        A `keras.Model` from [0, 1] images to logits.

    Raises:
        ValueError: for a depth that is not 6n + 4, a bad width or activation.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 28, 34, 70, ...). "
                         f"Received: depth={depth!r}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be an int >= 1. Received: width={width!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}")
    bn = batch_norm or default_batch_norm
    act = lambda name: keras.layers.Activation(activation, name=name)  # noqa: E731
    n = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = conv2d(16, 3, 1, "stem_conv")(x)
    for stage, base in enumerate((16, 32, 64)):
        filters = base * width
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}_"
            out = act(p + "act1")(bn(p + "bn1")(x))
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv2d(filters, 1, stride, p + "proj")(out)
            y = conv2d(filters, 3, stride, p + "conv1")(out)
            y = conv2d(filters, 3, 1, p + "conv2")(act(p + "act2")(bn(p + "bn2")(y)))
            x = keras.layers.Add(name=p + "add")([shortcut, y])
    x = act("final_act")(bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}_{activation}")
