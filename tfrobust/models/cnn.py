"""Small MNIST CNNs from the adversarial-training literature."""

import keras

from tfrobust.models.normalization import Normalize


def _torch_init(fan_in):
    # PyTorch's default for Conv2d/Linear: kaiming_uniform(a=sqrt(5)) on the
    # kernel and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias, i.e. both
    # bounded by 1/sqrt(fan_in).
    bound = fan_in ** -0.5
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


def wong_cnn(input_shape=(28, 28, 1), num_classes=10, mean=None, std=None, width=1, init="keras"):
    """The MNIST CNN of Wong et al., "Fast is better than free: revisiting adversarial training".

    arXiv 2001.03994. Conv(16, 4x4, stride 2, pad 1) - ReLU - Conv(32, 4x4,
    stride 2, pad 1) - ReLU - FC(100) - ReLU - FC(classes), with every width
    multiplied by `width`; 28x28 -> 14x14 -> 7x7 (166K parameters for MNIST).

    Args:
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.
        width: channel and unit multiplier (1 is the paper's model).
        init: "keras" (Glorot uniform kernels, zero biases) or "torch"
            (PyTorch's default initialisation, as in the paper's code).

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1. Received: width={width!r}")
    if init not in ("keras", "torch"):
        raise ValueError(f"init must be 'keras' or 'torch'. Received: init={init!r}")
    # fan_in of each layer, for init="torch": kernel area x input channels.
    kw = (lambda x, k=1: _torch_init(k * k * x.shape[-1])) if init == "torch" else (lambda x, k=1: {})
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    # PyTorch's padding=1 with stride 2: pad explicitly, then a valid conv,
    # so the geometry is the paper's for any input size.
    x = keras.layers.ZeroPadding2D(1, name="pad1")(x)
    x = keras.layers.Conv2D(16 * width, 4, strides=2, activation="relu", name="conv1", **kw(x, 4))(x)
    x = keras.layers.ZeroPadding2D(1, name="pad2")(x)
    x = keras.layers.Conv2D(32 * width, 4, strides=2, activation="relu", name="conv2", **kw(x, 4))(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100 * width, activation="relu", name="fc1", **kw(x))(x)
    outputs = keras.layers.Dense(num_classes, name="logits", **kw(x))(x)
    return keras.Model(inputs, outputs, name=f"wong_cnn_w{width}")


def madry_cnn(input_shape=(28, 28, 1), num_classes=10, mean=None, std=None):
    """The MNIST CNN of Madry et al., "Towards deep learning models resistant to adversarial attacks".

    arXiv 1706.06083. Conv(32, 5x5) - ReLU - MaxPool 2 - Conv(64, 5x5) - ReLU -
    MaxPool 2 - FC(1024) - ReLU - FC(classes), convolutions with "same"
    padding (3.27M parameters for MNIST).

    Args:
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics, applied inside the model.

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    x = keras.layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="madry_cnn")
