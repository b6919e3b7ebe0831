import logging
import os

import numpy as np
import pytest

from tfrobust.data import datasets


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)


def _write(path, n=4, label_max=9, seed=0, shape=(32, 32, 3), **extra):
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, (n, *shape)).astype("uint8")
    y = rng.randint(0, label_max + 1, n).astype("uint8")
    y[-1] = label_max
    np.savez(path, **{"x": x, "y": y, **extra})
    return x, y


@pytest.mark.parametrize("name", datasets.names())
def test_info_is_consistent(name):
    i = datasets.info(name)
    assert len(i.class_names) == i.num_classes == len(set(i.class_names))
    assert len(i.mean) == len(i.std) == i.image_shape[-1]
    assert all(0 < m < 1 for m in i.mean) and all(0 < s < 0.5 for s in i.std)
    assert i.train_size > i.test_size > 0


def test_info_values_and_unknown_names():
    assert datasets.info("mnist").mean == (0.1307,) and datasets.info("mnist").std == (0.3081,)
    assert datasets.info("fashion_mnist").mean == (0.2860,)
    assert datasets.info("cifar10").std == (0.2470, 0.2435, 0.2616)
    assert datasets.info("cifar100").class_names[:3] == ("apple", "aquarium_fish", "baby")
    assert datasets.info("svhn").tfds_name == "svhn_cropped"
    with pytest.raises(ValueError, match="name='imagenet'"):
        datasets.load("imagenet", "train")
    with pytest.raises(ValueError, match="split='val'"):
        datasets.load("mnist", "val")


def test_bundled_mnist_is_real_mnist():
    split = datasets.load("mnist", "train")
    assert split.images.shape == (60000, 28, 28, 1) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert split.labels.dtype == np.int64
    assert abs(split.images.mean() / 255 - datasets.info("mnist").mean[0]) < 1e-3
    assert "bundled" in split.source and "60000 of 60000" in split.source


@pytest.mark.parametrize("present, described", [((0, 2), "cifar10_train_{0,2}"), ((0, 1), "cifar10_train_0..1")])
def test_shards_use_whichever_are_present_in_order(tmp_path, present, described):
    shards = [_write(tmp_path / f"cifar10_train_{i}.npz", n=3 + i, seed=i) for i in present]
    _write(tmp_path / "cifar100_train_5.npz", n=2)  # another dataset's shard: ignored
    split = datasets.load("cifar10", "train", data_dir=str(tmp_path))
    n = sum(len(y) for _, y in shards)
    assert len(split) == n
    assert f"npz {tmp_path}: {described} ({n} of 50000 images)" == split.source
    np.testing.assert_array_equal(split.images, np.concatenate([x for x, _ in shards]))
    np.testing.assert_array_equal(split.labels, np.concatenate([y for _, y in shards]))
    assert split.labels.dtype == np.int64


def test_combined_npz_without_channel_axis(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {f"x_{s}": rng.randint(0, 256, (n, 28, 28)).astype("uint8") for s, n in (("train", 5), ("test", 3))}
    arrays.update(y_train=np.array([9, 0, 0, 3, 0], "uint8"), y_test=np.array([1, 2, 3], "uint8"))
    np.savez(tmp_path / "fashion_mnist.npz", **arrays)
    split = datasets.load("fashion_mnist", "test", data_dir=str(tmp_path))
    assert split.images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(split.images[..., 0], arrays["x_test"])
    assert "fashion_mnist.npz: x_test, y_test (3 of 10000 images)" in split.source


def test_data_dir_comes_before_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "cifar10_test.npz", n=4)
    _write(tmp_path / "b" / "cifar10_test.npz", n=6)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "b"))
    assert len(datasets.load("cifar10", "test")) == 6
    assert len(datasets.load("cifar10", "test", data_dir=str(tmp_path / "a"))) == 4
    assert len(datasets.load("cifar10", "test", data_dir=str(tmp_path / "empty"))) == 6


def test_missing_dataset_lists_every_place_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as e:
        datasets.load("cifar100", "test", data_dir=str(tmp_path))
    msg = str(e.value)
    for place in (f"npz files in {tmp_path}:", f"npz files in {tmp_path / 'env'}: no such directory",
                  f"TFDS cifar100 prepared in {tmp_path}", "TFDS cifar100 prepared in", "bundled data",
                  "download: not attempted"):
        assert place in msg, place
    for hint in ("cifar100.npz", "x_train", "cifar100_train_0.npz", "--data-dir", datasets.ENV_VAR,
                 "tfds build cifar100", "download=True"):
        assert hint in msg, hint


def _save_object_npy_as_npz(path):
    np.save(str(path) + ".npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    os.rename(str(path) + ".npy", path)


def _truncated_npz(path):
    _write(path.parent / "whole.npz")
    path.write_bytes((path.parent / "whole.npz").read_bytes()[:900])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, "uint8")), "pickled"),
        (_save_object_npy_as_npz, "single .npy array"),
        (lambda p: p.write_bytes(b"not a zip file at all"), "not a readable npz"),
        (_truncated_npz, "not a readable npz|unreadable"),
        (lambda p: _write(p, label_max=12), "Received: labels max=12"),
        (lambda p: np.savez(p, x=np.zeros((2, 32, 32, 3), "uint8"), y=np.array([0, -1])), "labels min=-1"),
        (lambda p: np.savez(p, x=np.zeros((2, 28, 28, 3), "uint8"), y=np.zeros(2, "uint8")),
         r"shape=\(2, 28, 28, 3\)"),
        (lambda p: np.savez(p, x=np.zeros((2, 32, 32, 3), "float32"), y=np.zeros(2, "uint8")), "dtype=float32"),
        (lambda p: np.savez(p, x=np.zeros((2, 32, 32, 3), "uint8"), y=np.zeros(3, "uint8")), "2 images"),
        (lambda p: np.savez(p, images=np.zeros((2, 32, 32, 3), "uint8")), "lacks the arrays"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path, make, match):
    path = tmp_path / "cifar10_test.npz"
    make(path)
    with pytest.raises(ValueError, match=match) as e:
        datasets.load("cifar10", "test", data_dir=str(tmp_path))
    assert str(path) in str(e.value)


# --- TFDS ---------------------------------------------------------------------
# The real CIFAR-10 builder prepares a tiny dataset offline: its download is
# replaced by a directory of files in CIFAR-10's binary format.

def _fake_cifar10_download(root, class_names):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)

    def record(i):  # label byte, then the R, G and B planes; pixel values tell i
        planes = np.stack([np.full((32, 32), v) for v in (i, 100 + i, 200 + i)]).astype("uint8")
        return bytes([i % 10]) + planes.tobytes()

    for b in range(5):
        (folder / f"data_batch_{b + 1}.bin").write_bytes(b"".join(record(2 * b + j) for j in range(2)))
    (folder / "test_batch.bin").write_bytes(b"".join(record(40 + j) for j in range(3)))
    (folder / "batches.meta.txt").write_text("\n".join(class_names) + "\n")
    return root


def test_looking_for_tfds_data_that_is_not_there_does_not_warn(tmp_path, caplog):
    pytest.importorskip("tensorflow_datasets")
    # TFDS warns, through absl, that the folder it looked in has no dataset_info.json; `tried` says so instead.
    level = logging.getLogger("absl").level
    with caplog.at_level(logging.INFO):
        with pytest.raises(FileNotFoundError, match="TFDS cifar10 prepared in .*not there"):
            datasets.load("cifar10", "test", data_dir=str(tmp_path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert logging.getLogger("absl").level == level and not logging.getLogger("absl").filters


def test_tfds_download_then_prepared_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    fake = _fake_cifar10_download(tmp_path / "download", datasets.info("cifar10").class_names)
    data_dir = str(tmp_path / "tfds")

    with pytest.raises(FileNotFoundError, match="TFDS cifar10 prepared in .*not there"):
        datasets.load("cifar10", "train", data_dir=data_dir)

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", lambda self, url: str(fake))
    train = datasets.load("cifar10", "train", data_dir=data_dir, download=True)
    monkeypatch.undo()
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    assert train.source.startswith(f"TFDS cifar10 'train' in {data_dir}") and "10 of 50000" in train.source

    test = datasets.load("cifar10", "test", data_dir=data_dir)  # prepared now: no download
    for split, first in ((train, 0), (test, 40)):
        ids = split.images[:, 0, 0, 0].astype(int)
        assert sorted(ids) == list(range(first, first + len(split)))
        np.testing.assert_array_equal(split.images[:, 5, 7], np.stack([ids, ids + 100, ids + 200], 1))
        np.testing.assert_array_equal(split.labels, ids % 10)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
