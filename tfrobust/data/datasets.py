"""Dataset loaders: TFDS when it can serve the data, local npz files otherwise.

Resolution order for `load(name, split)`:
1. npz files in `data_dir`, then in `$TFROBUST_DATA_DIR`;
2. TFDS data already prepared in `data_dir` (or TFDS' default directory), with
   no download;
3. the MNIST copy bundled with the package (MNIST only), so the main job runs
   offline;
4. a TFDS download, only if `download=True`.

npz formats (uint8 NHWC images, labels 0..K-1; `allow_pickle=False` always):
- `<name>.npz` with `x_train, y_train, x_test, y_test` (MNIST's Keras layout;
  28x28 images may omit the channel axis);
- `<name>_test.npz` / `<name>_train.npz` with `x, y`;
- `<name>_train_<i>.npz` shards with `x, y`, in order: whichever are present
  are used, and `Split.source` says which.
"""

import dataclasses
import glob
import os
import re
import zipfile
from typing import Optional, Tuple

import numpy as np

ENV_VAR = "TFROBUST_DATA_DIR"
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
        name: tfrobust's name for it.
        tfds_name: the TFDS builder name.
        num_classes: number of classes.
        image_shape: (H, W, C).
        class_names: human-readable class names.
        mean, std: per-channel pixel statistics in [0, 1] units, for the
            normalisation layer inside the model.
        train_size: examples in the full train split.
    """

    name: str
    tfds_name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    class_names: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    train_size: int


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")

_INFO = {
    "mnist": DatasetInfo("mnist", "mnist", 10, (28, 28, 1), tuple(str(i) for i in range(10)),
                         (0.1307,), (0.3081,), 60000),
    "fashion_mnist": DatasetInfo("fashion_mnist", "fashion_mnist", 10, (28, 28, 1), _FASHION_CLASSES,
                                 (0.2860,), (0.3530,), 60000),
    "cifar10": DatasetInfo("cifar10", "cifar10", 10, (32, 32, 3), _CIFAR10_CLASSES,
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 50000),
    "cifar100": DatasetInfo("cifar100", "cifar100", 100, (32, 32, 3), tuple(str(i) for i in range(100)),
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 50000),
    "svhn": DatasetInfo("svhn", "svhn_cropped", 10, (32, 32, 3), tuple(str(i) for i in range(10)),
                        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 73257),
}
SPLITS = ("train", "test")


def names():
    """The dataset names `load` accepts."""
    return tuple(_INFO)


def info(name):
    """Returns the `DatasetInfo` of a dataset."""
    if name not in _INFO:
        raise ValueError(f"Unknown dataset; expected one of {names()}. Received: name={name!r}")
    return _INFO[name]


@dataclasses.dataclass
class Split:
    """One split of a dataset, in memory.

    Attributes:
        images: uint8 `[N, H, W, C]`.
        labels: int64 `[N]`.
        info: the `DatasetInfo`.
        source: where the data came from, in words (files, shards, TFDS dir).
    """

    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo
    source: str

    def __len__(self):
        return len(self.labels)


def load(name, split, data_dir=None, download=False):
    """Loads a split into memory; see the module docstring for where it looks.

    Args:
        name: mnist, fashion_mnist, cifar10, cifar100 or svhn.
        split: "train" or "test".
        data_dir: a directory with npz files or prepared TFDS data.
        download: allow TFDS to download the data if nothing local serves it.

    Returns:
        A `Split`.

    Raises:
        FileNotFoundError: nothing serves the data; the message lists every
            place that was tried and how to provide the data.
        ValueError: a file is corrupt, pickled, or holds bad shapes or labels.
    """
    ds_info = info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    tried = []
    dirs = [d for d in (data_dir, os.environ.get(ENV_VAR)) if d]
    for d in dirs:
        found = _load_npz_dir(ds_info, split, d, tried)
        if found is not None:
            return found
    found = _load_tfds(ds_info, split, data_dir, tried, download=False)
    if found is not None:
        return found
    if os.path.isdir(BUNDLED_DIR):
        found = _load_npz_dir(ds_info, split, BUNDLED_DIR, tried)
        if found is not None:
            return found
    if download:
        found = _load_tfds(ds_info, split, data_dir, tried, download=True)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"No data for {name!r} split {split!r}. Looked in:\n  - "
        + "\n  - ".join(tried)
        + f"\nProvide it as npz files ({_npz_help(name)}) in a directory given by "
        f"--data-dir / data_dir=... or the {ENV_VAR} variable, or prepare it with "
        f"`tfds build {ds_info.tfds_name} --data_dir DIR` on a machine with internet."
    )


def _npz_help(name):
    return (f"{name}.npz with x_train, y_train, x_test, y_test; or {name}_test.npz and "
            f"{name}_train.npz / {name}_train_0.npz, ... with x, y; uint8 NHWC")


def _read_npz(path, keys):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic != b"PK\x05\x06":
        # Not a zip archive: np.load would try to unpickle it.
        raise ValueError(f"{path} is not a readable npz file. Received: first bytes={magic!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise ValueError(f"{path} lacks arrays {missing}. Received: keys={sorted(f.files)}")
            return [f[k] for k in keys]
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise ValueError(f"{path} holds pickled objects, which tfrobust never loads. "
                             f"Received: a pickled array") from e
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable npz file. Received: {type(e).__name__}: {e}") from e


def _check_arrays(ds_info, x, y, where):
    if x.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8. Received: dtype={x.dtype}")
    h, w, c = ds_info.image_shape
    if x.ndim == 3 and c == 1:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        raise ValueError(f"{where}: images must be [N, {h}, {w}, {c}]. Received: shape={x.shape}")
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers. Received: dtype={y.dtype}")
    if len(y) != len(x):
        raise ValueError(f"{where}: one label per image needed. Received: {len(x)} images, {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= ds_info.num_classes):
        raise ValueError(f"{where}: labels must lie in [0, {ds_info.num_classes}). "
                         f"Received: labels min={y.min()}, max={y.max()}")
    return x, y.astype(np.int64)


def _load_npz_dir(ds_info, split, directory, tried):
    name = ds_info.name
    combined = os.path.join(directory, f"{name}.npz")
    single = os.path.join(directory, f"{name}_{split}.npz")
    shard_paths = sorted(
        glob.glob(os.path.join(directory, f"{name}_{split}_*.npz")),
        key=lambda p: int(re.search(r"_(\d+)\.npz$", p).group(1)) if re.search(r"_(\d+)\.npz$", p) else -1,
    )
    shard_paths = [p for p in shard_paths if re.search(r"_(\d+)\.npz$", p)]
    if os.path.exists(single):
        x, y = _read_npz(single, ["x", "y"])
        x, y = _check_arrays(ds_info, x, y, single)
        return Split(x, y, ds_info, f"npz {single} ({len(y)} images)")
    if shard_paths:
        xs, ys = [], []
        for p in shard_paths:
            x, y = _read_npz(p, ["x", "y"])
            x, y = _check_arrays(ds_info, x, y, p)
            xs.append(x)
            ys.append(y)
        ids = [re.search(r"_(\d+)\.npz$", p).group(1) for p in shard_paths]
        x, y = np.concatenate(xs), np.concatenate(ys)
        total = ds_info.train_size if split == "train" else len(y)
        return Split(x, y, ds_info,
                     f"npz {directory}: {name}_{split}_{{{','.join(ids)}}} ({len(y)} of {total} images)")
    if os.path.exists(combined):
        x, y = _read_npz(combined, [f"x_{split}", f"y_{split}"])
        x, y = _check_arrays(ds_info, x, y, combined)
        return Split(x, y, ds_info, f"npz {combined}[{split}] ({len(y)} images)")
    tried.append(f"npz in {directory}: none of {name}.npz, {name}_{split}.npz, {name}_{split}_<i>.npz")
    return None


def _load_tfds(ds_info, split, data_dir, tried, download):
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # pragma: no cover - a declared dependency
        tried.append("TFDS: tensorflow_datasets is not installed")
        return None
    try:
        builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises many kinds here
        tried.append(f"TFDS {ds_info.tfds_name}: {type(e).__name__}: {e}")
        return None
    prepared = os.path.exists(os.path.join(builder.data_dir, "dataset_info.json"))
    if not prepared and not download:
        tried.append(f"TFDS {ds_info.tfds_name} prepared in {builder.data_dir} (not there; no download)")
        return None
    try:
        if not prepared:
            builder.download_and_prepare()
        # The feature dict rather than as_supervised: every builder tfrobust
        # names has "image" and "label", not every one declares supervised keys.
        data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        x, y = data["image"], data["label"]
    except Exception as e:  # noqa: BLE001
        tried.append(f"TFDS {ds_info.tfds_name} in {builder.data_dir}: {type(e).__name__}: {e}")
        return None
    x, y = _check_arrays(ds_info, np.asarray(x), np.asarray(y), f"TFDS {builder.data_dir}")
    return Split(x, y, ds_info, f"TFDS {ds_info.tfds_name} {split} from {builder.data_dir} ({len(y)} images)")
