"""ImageNet-style bottleneck ResNets of any depth, built so that depth 638 cannot hit the recursion limit."""

import keras

from tfrobust.models import mixbn
from tfrobust.models.normalization import Normalize, default_batch_norm, synchronized_batch_norm

#: Blocks per stage. 50/101/152: He et al., arXiv 1512.03385, Table 1;
#: 200: He et al., "Identity mappings in deep residual networks", arXiv
#: 1603.05027. 638 is the depth Xie & Yuille ("Intriguing properties of
#: adversarial training at scale", arXiv 1906.03787) train; we could not read
#: their layout, so 638 = 3 * 212 + 2 deepens the third stage the way
#: 101 -> 152 -> 200 do (an assumption, stated in the docs).
LAYOUTS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    638: (3, 24, 182, 3),
}


def _conv(filters, kernel_size, strides, name):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", use_bias=False,
                               kernel_initializer="he_normal", name=name)


@keras.saving.register_keras_serializable(package="tfrobust")
class Bottleneck(keras.layers.Layer):
    """One bottleneck block (1x1, 3x3, 1x1 with 4x expansion), as a single layer.

    Being one layer keeps the functional graph as deep as the number of blocks
    (212 for ResNet-638) instead of the number of ops (about 2000), which is
    what exceeds Python's recursion limit when Keras walks the graph. The
    stride sits on the 3x3 convolution (ResNet v1.5, as torchvision), padded
    symmetrically as PyTorch pads it.

    Args:
        filters: width of the 1x1 and 3x3 convolutions; the block outputs
            `4 * filters` channels.
        strides: 1 or 2.
        project: add a 1x1 projection (with BatchNorm) on the shortcut.
        bn_branch: None for plain BatchNorm; "adv" or "clean" makes every
            BatchNorm a MixBN layer (`models.mixbn`) with that inference branch.
        synchronized: BatchNorm (plain or MixBN) with statistics all-reduced
            across replicas (`normalization.synchronized_batch_norm`).
    """

    def __init__(self, filters, strides=1, project=False, bn_branch=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.project = int(filters), int(strides), bool(project)
        self.bn_branch, self.synchronized = bn_branch, bool(synchronized)

        def bn(name, gamma_initializer="ones"):
            if bn_branch is None:
                return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=self.synchronized,
                                                       gamma_initializer=gamma_initializer, name=name)
            return mixbn.MixBatchNormalization(bn_branch, momentum=0.9, epsilon=1e-5, synchronized=self.synchronized,
                                               gamma_initializer=gamma_initializer, name=name)

        self.conv1 = _conv(self.filters, 1, 1, "conv1")
        self.bn1 = bn("bn1")
        self.pad2 = keras.layers.ZeroPadding2D(1, name="pad2")
        self.conv2 = _conv(self.filters, 3, self.strides, "conv2")
        self.bn2 = bn("bn2")
        self.conv3 = _conv(4 * self.filters, 1, 1, "conv3")
        # Zero-initialised last gamma: each block starts as the identity,
        # which is what makes very deep nets trainable (Goyal et al., arXiv 1706.02677).
        self.bn3 = bn("bn3", gamma_initializer="zeros")
        if self.project:
            self.proj = _conv(4 * self.filters, 1, self.strides, "proj")
            self.proj_bn = bn("proj_bn")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv1.build(shape)
        self.bn1.build(shape[:-1] + (self.filters,))
        self.pad2.build(shape[:-1] + (self.filters,))
        padded = self.pad2.compute_output_shape(shape[:-1] + (self.filters,))
        self.conv2.build(padded)
        out2 = self.conv2.compute_output_shape(padded)
        self.bn2.build(out2)
        self.conv3.build(out2)
        self.bn3.build(out2[:-1] + (4 * self.filters,))
        if self.project:
            self.proj.build(shape)
            self.proj_bn.build(self.proj.compute_output_shape(shape))

    def call(self, x, training=None):
        y = keras.ops.relu(self.bn1(self.conv1(x), training=training))
        y = keras.ops.relu(self.bn2(self.conv2(self.pad2(y)), training=training))
        y = self.bn3(self.conv3(y), training=training)
        shortcut = self.proj_bn(self.proj(x), training=training) if self.project else x
        return keras.ops.relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if self.strides == 2:
            h = None if h is None else (h + 1) // 2
            w = None if w is None else (w + 1) // 2
        return (input_shape[0], h, w, 4 * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides, project=self.project, bn_branch=self.bn_branch)
        if self.synchronized:  # absent from older files, which load as unsynchronised
            config["synchronized"] = True
        return config


def bottleneck_resnet(depth, input_shape=(224, 224, 3), num_classes=1000, mean=None, std=None,
                      width=64, stem="imagenet", batch_norm=None):
    """A bottleneck ResNet of depth 50, 101, 152, 200 or 638.

    He et al., "Deep residual learning for image recognition", arXiv
    1512.03385 (50/101/152); He et al., arXiv 1603.05027 (200); Xie &
    Yuille, arXiv 1906.03787, train these up to depth 638 (layout: see
    `LAYOUTS`). Every block is one `Bottleneck` layer, so depth 638 builds,
    saves and loads under Python's default recursion limit.

    Args:
        depth: a key of `LAYOUTS`.
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics for the `Normalize` layer.
        width: channels of the first stage's 3x3 convolutions (64 in the
            papers); smaller values give cheap models for tests.
        stem: "imagenet" (7x7 stride-2 convolution and 3x3 stride-2 max
            pool) or "cifar" (one 3x3 stride-1 convolution) for small inputs.
        batch_norm: None (plain BatchNorm), `mixbn.mix_batch_norm(branch,
            synchronized)` for MixBN or `normalization.synchronized_batch_norm`;
            other factories are refused, since the blocks must rebuild their
            BatchNorm from their config.

    Returns:
        A `keras.Model` from [0, 1] images to logits.
    """
    if depth not in LAYOUTS:
        raise ValueError(f"depth must be one of {sorted(LAYOUTS)}. Received: depth={depth!r}")
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar'. Received: stem={stem!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1. Received: width={width!r}")
    branch = getattr(batch_norm, "branch", None)
    synchronized = batch_norm is synchronized_batch_norm or bool(getattr(batch_norm, "synchronized", False))
    if batch_norm is not None and branch is None and batch_norm is not synchronized_batch_norm:
        raise ValueError("bottleneck_resnet takes batch_norm=None, mixbn.mix_batch_norm(...) or "
                         "normalization.synchronized_batch_norm.")
    stem_bn = batch_norm or default_batch_norm
    inputs = keras.Input(input_shape, name="images")
    x = Normalize(mean, std, name="normalize")(inputs)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
        x = _conv(width, 7, 2, "stem_conv")(x)
        x = keras.layers.ReLU(name="stem_relu")(stem_bn("stem_bn")(x))
        x = keras.layers.ZeroPadding2D(1, name="pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    else:
        x = keras.layers.ZeroPadding2D(1, name="stem_pad")(x)
        x = _conv(width, 3, 1, "stem_conv")(x)
        x = keras.layers.ReLU(name="stem_relu")(stem_bn("stem_bn")(x))
    for stage, blocks in enumerate(LAYOUTS[depth]):
        filters = width * 2**stage
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = Bottleneck(filters, strides, project=block == 0, bn_branch=branch, synchronized=synchronized,
                           name=f"s{stage + 1}b{block + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")
