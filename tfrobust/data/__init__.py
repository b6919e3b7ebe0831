"""Data: loaders (TFDS, npz, bundled MNIST) and pipelines with stateless per-element seeds."""

from tfrobust import seeds  # noqa: F401 (the pipelines' per-element seeds, also `tfrobust.data.seeds`)
from tfrobust.data import augment, pipelines
from tfrobust.data.datasets import DatasetInfo, Split, info, load, names
from tfrobust.data.pipelines import eval_dataset, steps_per_epoch, train_dataset

__all__ = ["DatasetInfo", "Split", "augment", "eval_dataset", "info", "load", "names", "pipelines",
           "seeds", "steps_per_epoch", "train_dataset"]
