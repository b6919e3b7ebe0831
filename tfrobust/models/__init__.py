"""Classifiers that map float32 NHWC [0, 1] images to logits, normalising inside."""

import re

from tfrobust.models.bottleneck_resnet import LAYOUTS as _BOTTLENECK_LAYOUTS
from tfrobust.models.bottleneck_resnet import bottleneck_resnet
from tfrobust.models.cnn import madry_cnn, wong_cnn
from tfrobust.models.mixbn import MixBatchNormalization
from tfrobust.models.normalization import Normalize
from tfrobust.models.preact_resnet import preact_resnet18
from tfrobust.models.resnet import cifar_resnet
from tfrobust.models.wide_resnet import wide_resnet

_FIXED = ("wong_cnn", "madry_cnn", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
          "preact_resnet18")


def available():
    """Model names that `build` accepts ("wrn-<depth>-<width>" for any valid WRN)."""
    return _FIXED + tuple(f"resnet{d}" for d in sorted(_BOTTLENECK_LAYOUTS)) + ("wrn-<depth>-<width>",)


def takes_batch_norm(name):
    """Whether the model `name` accepts a `batch_norm=` factory (e.g. for MixBN)."""
    if name == "preact_resnet18" or re.fullmatch(r"wrn-\d+-\d+", name):
        return True
    m = re.fullmatch(r"resnet(\d+)", name)
    return bool(m) and (name in _FIXED or int(m.group(1)) in _BOTTLENECK_LAYOUTS)


def build(name, input_shape, num_classes, mean=None, std=None, **kwargs):
    """Builds a registered model by name.

    Args:
        name: one of `available()`, e.g. "resnet20" or "wrn-28-10".
        input_shape: (H, W, C).
        num_classes: number of logits.
        mean, std: normalisation statistics for the `Normalize` layer.
        **kwargs: passed to the builder (e.g. `width=2` or `init="torch"`
            for wong_cnn, `activation="swish"` for a WRN, `batch_norm=` for
            the ResNets).

    Returns:
        A `keras.Model` from [0, 1] images to logits.

    Raises:
        ValueError: for an unknown name, or bad arguments to the builder.
    """
    common = dict(input_shape=tuple(input_shape), num_classes=int(num_classes), mean=mean, std=std)
    if name == "wong_cnn":
        return wong_cnn(**common, **kwargs)
    if name == "madry_cnn":
        return madry_cnn(**common, **kwargs)
    if name == "preact_resnet18":
        return preact_resnet18(**common, **kwargs)
    m = re.fullmatch(r"resnet(\d+)", name)
    if m and int(m.group(1)) in _BOTTLENECK_LAYOUTS:
        return bottleneck_resnet(int(m.group(1)), **common, **kwargs)
    if m and name in _FIXED:
        return cifar_resnet(int(m.group(1)), **common, **kwargs)
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    if m:
        return wide_resnet(int(m.group(1)), int(m.group(2)), **common, **kwargs)
    raise ValueError(f"Unknown model; expected one of {available()}. Received: name={name!r}")


__all__ = ["MixBatchNormalization", "Normalize", "available", "bottleneck_resnet", "build", "cifar_resnet", "madry_cnn", "preact_resnet18",
           "takes_batch_norm", "wide_resnet", "wong_cnn"]
