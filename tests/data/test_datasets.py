import os

import numpy as np
import pytest

from tfrobust.data import datasets


def _write_shard(path, n, label_max=9, seed=0):
    rng = np.random.RandomState(seed)
    np.savez(path, x=rng.randint(0, 256, (n, 32, 32, 3)).astype("uint8"),
             y=rng.randint(0, label_max + 1, n).astype("uint8"))


def test_bundled_mnist_is_real_mnist(monkeypatch):
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    split = datasets.load("mnist", "train")
    assert split.images.shape == (60000, 28, 28, 1) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert split.labels.dtype == np.int64
    assert abs(split.images.mean() / 255 - 0.1307) < 1e-3
    assert "bundled" in split.source


def test_cifar_shards_use_whichever_are_present(tmp_path):
    _write_shard(tmp_path / "cifar10_train_0.npz", 5, seed=0)
    _write_shard(tmp_path / "cifar10_train_2.npz", 7, seed=2)
    split = datasets.load("cifar10", "train", data_dir=str(tmp_path))
    assert len(split) == 12
    assert "cifar10_train_{0,2}" in split.source and "12 of 50000" in split.source
    first = np.load(tmp_path / "cifar10_train_0.npz")
    np.testing.assert_array_equal(split.images[:5], first["x"])


def test_env_var_is_a_data_dir(tmp_path, monkeypatch):
    _write_shard(tmp_path / "cifar10_test.npz", 4)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert len(datasets.load("cifar10", "test")) == 4


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as e:
        datasets.load("cifar100", "test", data_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "TFDS" in msg and datasets.ENV_VAR in msg and "cifar100.npz" in msg


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "cifar10_test.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="pickled"):
        datasets.load("cifar10", "test", data_dir=str(tmp_path))


def test_corrupt_npz_is_refused(tmp_path):
    (tmp_path / "cifar10_test.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable npz"):
        datasets.load("cifar10", "test", data_dir=str(tmp_path))


def test_labels_out_of_range_are_refused(tmp_path):
    _write_shard(tmp_path / "cifar10_test.npz", 4, label_max=12, seed=3)
    with pytest.raises(ValueError, match="max=1[0-2]"):
        datasets.load("cifar10", "test", data_dir=str(tmp_path))


def test_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "cifar10_test.npz", x=np.zeros((2, 28, 28, 3), "uint8"), y=np.zeros(2, "uint8"))
    with pytest.raises(ValueError, match="shape=\\(2, 28, 28, 3\\)"):
        datasets.load("cifar10", "test", data_dir=str(tmp_path))


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="name='imagenet'"):
        datasets.load("imagenet", "train")
    with pytest.raises(ValueError, match="split='val'"):
        datasets.load("mnist", "val")


def test_tfds_prepared_data_is_used(tmp_path, monkeypatch):
    # A real TFDS dataset, prepared offline from arrays we make, read back
    # through the same code path as a prepared CIFAR-10.
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (6, 28, 28, 1)).astype("uint8")
    y = np.array([3, 1, 4, 1, 5, 9])
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(28, 28, 1)),
        "label": tfds.features.ClassLabel(num_classes=10),
    })
    import tensorflow as tf

    split_ds = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    tfds.dataset_builders.store_as_tfds_dataset(
        name="mnist", version="3.0.1", features=features,
        split_datasets={"train": split_ds, "test": split_ds}, data_dir=str(tmp_path),
        config=None, description="test data",
    )
    split = datasets.load("mnist", "test", data_dir=str(tmp_path))
    assert split.source.startswith("TFDS mnist")
    np.testing.assert_array_equal(np.sort(split.labels), np.sort(y))
    assert split.images.shape == (6, 28, 28, 1)
