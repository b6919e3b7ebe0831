"""Dataset loaders: local npz files, prepared TFDS data, the bundled MNIST copy.

`load(name, split)` looks, in this order, in:

1. npz files in `data_dir`, then in `$TFROBUST_DATA_DIR`;
2. TFDS data already prepared in `data_dir`, then in TFDS's default directory
   (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`), without downloading;
3. the MNIST copy bundled with the package (`tfrobust/data/bundled/mnist.npz`),
   so that the main job runs offline;
4. a TFDS download, only if `download=True`.

npz formats (images uint8 NHWC, labels integers in [0, num_classes); files are
always read with `allow_pickle=False`):

- `<name>.npz` with `x_train, y_train, x_test, y_test` (Keras' `mnist.npz`
  layout; 28x28 images may omit the channel axis);
- `<name>_<split>.npz` with `x, y`;
- `<name>_<split>_<i>.npz` shards with `x, y`, concatenated in order of `i`.
  Whichever shards are present are used, and `Split.source` says which.

Within one directory the first of `<name>_<split>.npz`, the shards and
`<name>.npz` that exists is used.
"""

import contextlib
import dataclasses
import logging
import os
import re
import zipfile
import zlib
from typing import Tuple

import numpy as np

ENV_VAR = "TFROBUST_DATA_DIR"
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
        name: str, tfrobust's name for it.
        tfds_name: str, the TFDS builder name.
        num_classes: int, number of classes.
        image_shape: tuple (H, W, C).
        class_names: tuple of str, human-readable class names.
        mean: tuple of float, per-channel pixel mean in [0, 1] units, for the
            normalisation inside the model.
        std: tuple of float, per-channel pixel standard deviation, same units.
        train_size: int, examples in the full train split.
        test_size: int, examples in the full test split.
    """

    name: str
    tfds_name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    class_names: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    train_size: int
    test_size: int

    def split_size(self, split):
        """The number of examples in the full `split`."""
        return self.train_size if split == "train" else self.test_size


_DIGITS = tuple(str(i) for i in range(10))
_FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                    "sneaker", "bag", "ankle boot")
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck")
# CIFAR-100 fine labels, in label order (the dataset's fine_label_names).
_CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""".split())
assert len(_CIFAR100_CLASSES) == 100

# Pixel statistics over the train split, in [0, 1] units. MNIST, Fashion-MNIST
# and CIFAR-10 are checked against the data in /work/shared/datasets; CIFAR-100
# and SVHN are the values published with common training code (e.g.
# kuangliu/pytorch-cifar, the TRADES and MART repositories).
_INFO = {
    "mnist": DatasetInfo("mnist", "mnist", 10, (28, 28, 1), _DIGITS,
                         (0.1307,), (0.3081,), 60000, 10000),
    "fashion_mnist": DatasetInfo("fashion_mnist", "fashion_mnist", 10, (28, 28, 1), _FASHION_CLASSES,
                                 (0.2860,), (0.3530,), 60000, 10000),
    "cifar10": DatasetInfo("cifar10", "cifar10", 10, (32, 32, 3), _CIFAR10_CLASSES,
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 50000, 10000),
    "cifar100": DatasetInfo("cifar100", "cifar100", 100, (32, 32, 3), _CIFAR100_CLASSES,
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 50000, 10000),
    # TFDS' svhn_cropped maps the digit 0 (label 10 in the .mat files) to 0.
    "svhn": DatasetInfo("svhn", "svhn_cropped", 10, (32, 32, 3), _DIGITS,
                        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 73257, 26032),
}


def names():
    """The dataset names `load` and `info` accept."""
    return tuple(_INFO)


def info(name):
    """Returns the `DatasetInfo` of a dataset.

    Args:
        name: str, one of `names()`.

    Raises:
        ValueError: the name is unknown.
    """
    if name not in _INFO:
        raise ValueError(f"Unknown dataset; expected one of {names()}. Received: name={name!r}")
    return _INFO[name]


@dataclasses.dataclass
class Split:
    """One split of a dataset, in memory.

    Attributes:
        images: uint8 numpy array `[N, H, W, C]`.
        labels: int64 numpy array `[N]`.
        info: the `DatasetInfo`.
        source: str, where the data came from (files and shards, or the TFDS
            directory), for logs and result files.
    """

    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo
    source: str

    def __len__(self):
        return len(self.labels)


def load(name, split, data_dir=None, download=False):
    """Loads one split into memory; the module docstring says where it looks.

    Args:
        name: str, one of mnist, fashion_mnist, cifar10, cifar100, svhn.
        split: str, "train" or "test".
        data_dir: str or None, a directory with npz files or prepared TFDS data.
        download: bool, let TFDS download and prepare the data (into
            `data_dir`, or TFDS's default directory) if nothing local serves it.

    Returns:
        A `Split` with uint8 NHWC images and int64 labels.

    Raises:
        FileNotFoundError: nothing serves the data. The message lists every
            place that was tried and how to provide the data.
        ValueError: an unknown name or split; or a file that is corrupt,
            pickled, or holds the wrong dtype, shape or labels.

    Example:

    >>> train = load("mnist", "train")  # the bundled copy when nothing else is there
    >>> train.images.shape, train.source
    """
    ds_info = info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    if data_dir is not None:
        data_dir = os.fspath(data_dir)
    tried = []

    env_dir = os.environ.get(ENV_VAR) or None
    for label, directory in (("data_dir", data_dir), (f"${ENV_VAR}", env_dir)):
        if directory is None:
            tried.append(f"npz files: {label} not given" if label == "data_dir"
                         else f"npz files: {label} not set")
            continue
        found = _load_npz_dir(ds_info, split, directory, tried)
        if found is not None:
            return found

    for directory in ([data_dir] if data_dir else []) + [None]:
        found = _load_tfds(ds_info, split, directory, tried, download=False)
        if found is not None:
            return found

    if name == "mnist":
        found = _load_npz_dir(ds_info, split, BUNDLED_DIR, tried, bundled=True)
        if found is not None:
            return found
    else:
        tried.append(f"bundled data in {BUNDLED_DIR}: MNIST only")

    if download:
        found = _load_tfds(ds_info, split, data_dir, tried, download=True)
        if found is not None:
            return found
    else:
        tried.append("TFDS download: not attempted (download=False)")

    raise FileNotFoundError(
        f"No data for {name!r} split {split!r}. Looked in, in order:\n  - "
        + "\n  - ".join(tried)
        + "\nTo provide it, do one of:\n"
        f"  - put npz files in a directory and pass it as --data-dir / data_dir=..., or set "
        f"{ENV_VAR}: {_npz_help(ds_info)};\n"
        f"  - prepare it with TFDS on a machine with internet, `tfds build {ds_info.tfds_name} "
        f"--data_dir DIR`, copy DIR here and pass it as --data-dir;\n"
        f"  - or call load(..., download=True) where there is internet."
    )


def _npz_help(ds_info):
    name, (h, w, c) = ds_info.name, ds_info.image_shape
    return (f"{name}.npz with arrays x_train, y_train, x_test, y_test; or {name}_{{train,test}}.npz "
            f"with arrays x, y; or shards {name}_train_0.npz, {name}_train_1.npz, ... with x, y. "
            f"Images uint8 [N, {h}, {w}, {c}], labels integers in [0, {ds_info.num_classes})")


# --- npz ---------------------------------------------------------------------

def _load_npz_dir(ds_info, split, directory, tried, bundled=False):
    name = ds_info.name
    where = f"the bundled copy ({directory})" if bundled else directory
    if not os.path.isdir(directory):
        tried.append(f"npz files in {where}: no such directory")
        return None
    single = os.path.join(directory, f"{name}_{split}.npz")
    combined = os.path.join(directory, f"{name}.npz")
    shards = _find_shards(directory, f"{name}_{split}_")
    prefix = "bundled MNIST copy, " if bundled else ""
    total = ds_info.split_size(split)

    if os.path.isfile(single):
        x, y = _check_arrays(ds_info, *_read_npz(single, ("x", "y")), where=single)
        return Split(x, y, ds_info, f"{prefix}npz {single} ({len(y)} of {total} images)")
    if shards:
        xs, ys = [], []
        for _, path in shards:
            x, y = _check_arrays(ds_info, *_read_npz(path, ("x", "y")), where=path)
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        used = f"{name}_{split}_{_describe_indices([i for i, _ in shards])}"
        return Split(x, y, ds_info, f"{prefix}npz {directory}: {used} ({len(y)} of {total} images)")
    if os.path.isfile(combined):
        keys = (f"x_{split}", f"y_{split}")
        x, y = _check_arrays(ds_info, *_read_npz(combined, keys), where=combined)
        return Split(x, y, ds_info,
                     f"{prefix}npz {combined}: {keys[0]}, {keys[1]} ({len(y)} of {total} images)")
    tried.append(f"npz files in {where}: none of {name}_{split}.npz, {name}_{split}_<i>.npz, "
                 f"{name}.npz")
    return None


def _find_shards(directory, stem):
    pattern = re.compile(re.escape(stem) + r"(\d+)\.npz$")
    shards = []
    for entry in os.listdir(directory):
        m = pattern.fullmatch(entry)
        if m and os.path.isfile(os.path.join(directory, entry)):
            shards.append((int(m.group(1)), os.path.join(directory, entry)))
    return sorted(shards)


def _describe_indices(indices):
    """[0, 1, 2] -> "0..2"; [0, 2] -> "{0,2}"; [3] -> "3"."""
    if len(indices) == 1:
        return str(indices[0])
    if indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}..{indices[-1]}"
    return "{" + ",".join(str(i) for i in indices) + "}"


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _read_npz(path, keys):
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] not in _ZIP_MAGIC:
        # Not a zip archive. np.load would take it for a .npy file or a pickle.
        kind = "a single .npy array" if magic == b"\x93NUMPY" else "not an npz (zip) archive"
        raise ValueError(f"{path} is not a readable npz file: it is {kind}. "
                         f"Received: first bytes={magic!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable npz file. Received: {type(e).__name__}: {e}") from e
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}. Received: keys={sorted(archive.files)}")
        arrays = []
        for key in keys:
            try:
                arrays.append(archive[key])
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise ValueError(
                        f"{path}: array {key!r} holds pickled Python objects, which tfrobust never "
                        f"loads (allow_pickle=False). Save plain uint8/integer arrays. "
                        f"Received: a pickled (object) array") from e
                raise ValueError(f"{path}: array {key!r} is unreadable. Received: {e}") from e
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise ValueError(f"{path}: array {key!r} is unreadable (corrupt file). "
                                 f"Received: {type(e).__name__}: {e}") from e
    return arrays


def _check_arrays(ds_info, x, y, where):
    """Checks dtype, shape and label range; returns (uint8 NHWC, int64 [N])."""
    h, w, c = ds_info.image_shape
    if x.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 in 0..255. Received: images dtype={x.dtype}")
    if x.ndim == 3 and c == 1:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        raise ValueError(f"{where}: images must have shape [N, {h}, {w}, {c}]. "
                         f"Received: images shape={x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers. Received: labels dtype={y.dtype}")
    if y.ndim > 2 or y.size != len(x) or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"{where}: need one label per image, shape [N] or [N, 1]. "
                         f"Received: {len(x)} images, labels shape={y.shape}")
    y = y.reshape(-1)
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise ValueError(f"{where}: labels must lie in [0, {ds_info.num_classes}). "
                             f"Received: labels min={lo}")
        if hi >= ds_info.num_classes:
            raise ValueError(f"{where}: labels must lie in [0, {ds_info.num_classes}). "
                             f"Received: labels max={hi}")
    return x, y.astype(np.int64)


# --- TFDS --------------------------------------------------------------------

def _not_prepared_notice(record):
    return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _quiet_absl():
    """Drops TFDS's notice that a dataset folder has no dataset_info.json while it looks for one.

    Looking is one step of several (`load`), and a dataset TFDS has not prepared is an expected outcome that
    `tried` records; TFDS's other warnings still show.
    """
    logger = logging.getLogger("absl")
    logger.addFilter(_not_prepared_notice)
    try:
        yield
    finally:
        logger.removeFilter(_not_prepared_notice)


def _load_tfds(ds_info, split, data_dir, tried, download):
    """Reads a prepared TFDS dataset; prepares it first only if `download`."""
    where = data_dir or "TFDS's default data directory"
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # noqa: BLE001 - a broken install shows up in many ways
        tried.append(f"TFDS {ds_info.tfds_name} in {where}: cannot import tensorflow_datasets "
                     f"({type(e).__name__}: {e})")
        return None
    try:
        with _quiet_absl():
            builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
            prepared = builder.is_prepared()
    except Exception as e:  # noqa: BLE001 - TFDS raises many kinds here
        tried.append(f"TFDS {ds_info.tfds_name} in {where}: {type(e).__name__}: {e}")
        return None
    if not prepared:
        if not download:
            tried.append(f"TFDS {ds_info.tfds_name} prepared in {builder.data_dir}: not there")
            return None
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - network, checksum and disk errors alike
            tried.append(f"TFDS download of {ds_info.tfds_name} into {builder.data_dir}: "
                         f"failed ({type(e).__name__}: {e})")
            return None
    label = f"TFDS {ds_info.tfds_name} '{split}' in {builder.data_dir}"
    try:
        x, y = tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, batch_size=-1))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{label} is prepared but could not be read. "
                         f"Received: {type(e).__name__}: {e}") from e
    x, y = _check_arrays(ds_info, np.asarray(x), np.asarray(y), where=label)
    # TFDS shuffles examples when it prepares a dataset, so index i is not the
    # i-th image of the original files (npz shards keep the original order).
    return Split(x, y, ds_info, f"{label} ({len(y)} of {ds_info.split_size(split)} images, "
                                f"in TFDS's stored order)")
