import numpy as np
import pytest

from tests import helpers
from tfrobust.data import augment, pipelines, seeds

N, B = 48, 8


def _arrays(n=N):
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (n, 8, 8, 1)).astype("uint8"), (np.arange(n) % 3).astype("int64")


def _batches(ds, k):
    return [(f["image"].numpy(), f["seed"].numpy(), y.numpy()) for f, y in ds.take(k)]


def _ds(**kw):
    x, y = _arrays()
    args = dict(batch_size=B, seed=5, augment="fixed", pad=2)
    args.update(kw)
    return pipelines.train_dataset(x, y, **args)


def test_same_seed_gives_bit_identical_batches_with_autotune():
    a, b = _batches(_ds(), 12), _batches(_ds(), 12)
    for (xa, sa, ya), (xb, sb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(ya, yb)
    c = _batches(_ds(seed=6), 1)
    assert not np.array_equal(a[0][1], c[0][1])


def test_elements_are_in_range_and_batches_have_the_contract_types():
    (x, s, y), = _batches(_ds(), 1)
    assert x.dtype == np.float32 and x.shape == (B, 8, 8, 1) and 0 <= x.min() and x.max() <= 1
    assert s.dtype == np.int32 and s.shape == (B, 2) and y.dtype == np.int64


def _epoch_view(ds, steps):
    """Per epoch: the images by source label order, keyed by their unaugmented source index."""
    return _batches(ds, steps)


def test_epochs_reshuffle_and_reaugment():
    steps = pipelines.steps_per_epoch(N, B)
    batches = _batches(_ds(), 2 * steps)
    e0 = np.concatenate([b[1] for b in batches[:steps]])
    e1 = np.concatenate([b[1] for b in batches[steps:]])
    # Every element appears once per epoch with its own attack seed; the seeds
    # of epoch 1 are all new.
    assert len({tuple(s) for s in e0}) == N
    assert not {tuple(s) for s in e0} & {tuple(s) for s in e1}


def test_each_element_gets_its_own_augmentation():
    x, y = _arrays()
    x[:] = 200  # identical images: any difference comes from the augmentation
    ds = pipelines.train_dataset(x, y, batch_size=B, seed=0, augment="fixed", pad=2)
    imgs = np.concatenate([b[0] for b in _batches(ds, 2)])
    distinct = {imgs[i].tobytes() for i in range(len(imgs))}
    assert len(distinct) > 5


def _legacy_params(mode, steps):
    # The augmentation seeds are internal; recover the parameters by feeding a
    # constant image with a marker so each crop offset is visible.
    x, y = _arrays()
    x[:] = 0
    x[:, 0, 0, 0] = 255  # marker pixel moves with the crop and the flip
    ds = pipelines.train_dataset(x, y, batch_size=B, seed=0, augment=mode, pad=2, legacy_workers=2)
    return [b[0] for b in _batches(ds, steps)]


def test_legacy_mode_repeats_across_workers_and_epochs():
    steps = pipelines.steps_per_epoch(N, B)
    legacy = _legacy_params("legacy", 2 * steps)
    # Workers 0 and 1 share one stream: batch 0 and batch 1 look the same.
    np.testing.assert_array_equal(legacy[0], legacy[1])
    np.testing.assert_array_equal(legacy[2], legacy[3])
    # The stream restarts every epoch: batch j of epoch 1 == batch j of epoch 0.
    for j in range(steps):
        np.testing.assert_array_equal(legacy[j], legacy[steps + j])
    fixed = _legacy_params("fixed", 2 * steps)
    assert not np.array_equal(fixed[0], fixed[1])
    assert not np.array_equal(fixed[0], fixed[steps])


def test_resume_starts_exactly_at_the_requested_batch():
    steps = pipelines.steps_per_epoch(N, B)
    full = _batches(_ds(), steps + 5)
    resumed = _batches(_ds(start_epoch=1, start_step=3), 2)
    for got, want in zip(resumed, full[steps + 3: steps + 5]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_seeds_do_not_depend_on_the_number_of_replicas():
    single = _batches(_ds(), 3)
    strategy = helpers.mirrored_strategy()
    dist = strategy.experimental_distribute_dataset(_ds())
    it = iter(dist)
    for want in single:
        features, labels = next(it)
        parts = strategy.experimental_local_results(features["seed"])
        assert len(parts) == 2 and parts[0].shape[0] == B // 2
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]), want[1])
        imgs = np.concatenate([p.numpy() for p in strategy.experimental_local_results(features["image"])])
        np.testing.assert_array_equal(imgs, want[0])


def test_eval_dataset_is_ordered_and_batch_size_independent():
    x, y = _arrays()
    a = _batches(pipelines.eval_dataset(x, y, batch_size=5, n=20), 10)
    b = _batches(pipelines.eval_dataset(x, y, batch_size=20, n=20), 1)
    np.testing.assert_array_equal(np.concatenate([t[1] for t in a]), b[0][1])
    np.testing.assert_array_equal(np.concatenate([t[2] for t in a]), y[:20])
    np.testing.assert_array_equal(b[0][0], x[:20].astype("float32") / np.float32(255))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images": np.zeros((4, 8, 8, 1), "int32")}, TypeError, "images.dtype=int32"),
        ({"images": np.zeros((4, 8, 8), "uint8")}, ValueError, "rank 4"),
        ({"images": np.full((4, 8, 8, 1), 2.0, "float32")}, ValueError, "max=2"),
        ({"labels": np.array([0, 1, 2])}, ValueError, "3 labels for 4 images"),
        ({"labels": np.array([0, -1, 2, 1])}, ValueError, "min=-1"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"augment": "random"}, ValueError, "augment='random'"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {"images": np.zeros((4, 8, 8, 1), "uint8"), "labels": np.array([0, 1, 2, 1]),
            "batch_size": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pipelines.train_dataset(**args)
