import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.data import augment, pipelines, seeds

N, B, PAD = 48, 8, 2
STEPS = N // B


def _arrays(n=N, ramp=False):
    """uint8 images [n, 8, 8, 1]; labels = source index, so every element says where it came from.

    With `ramp`, every image is the same picture with distinct pixel values:
    two augmented images are then equal exactly when their parameters are.
    """
    if ramp:
        x = np.tile((np.arange(64).reshape(8, 8, 1) * 3 + 40).astype("uint8"), (n, 1, 1, 1))
    else:
        x = np.random.RandomState(0).randint(0, 256, (n, 8, 8, 1)).astype("uint8")
    return x, np.arange(n, dtype="int64")


def _batches(ds, k):
    return [(f["image"].numpy(), f["seed"].numpy(), y.numpy()) for f, y in ds.take(k)]


def _ds(ramp=False, **kw):
    x, y = _arrays(ramp=ramp)
    args = dict(batch_size=B, seed=5, augment="fixed", pad=PAD, cutout=3)
    args.update(kw)
    return pipelines.train_dataset(x, y, **args)


def test_same_seed_gives_bit_identical_batches_with_autotune():
    a, b = _batches(_ds(), 2 * STEPS), _batches(_ds(), 2 * STEPS)
    for xa_sa_ya, xb_sb_yb in zip(a, b):
        for u, v in zip(xa_sa_ya, xb_sb_yb):
            np.testing.assert_array_equal(u, v)
    c = _batches(_ds(seed=6), 1)
    assert not np.array_equal(a[0][1], c[0][1]) and not np.array_equal(a[0][0], c[0][0])


def test_batches_follow_the_contract():
    ds = _ds()
    spec_features, spec_labels = ds.element_spec
    assert spec_features["image"].dtype == tf.float32 and spec_features["image"].shape == (B, 8, 8, 1)
    assert spec_features["seed"].dtype == tf.int32 and spec_features["seed"].shape == (B, 2)
    assert spec_labels.dtype == tf.int64 and spec_labels.shape == (B,)
    (x, _, _), = _batches(ds, 1)
    assert 0 <= x.min() and x.max() <= 1


def test_every_element_is_its_contract_seeds_and_augmentation():
    x, _ = _arrays()
    for step, (images, attack_seeds, idx) in enumerate(_batches(_ds(), 2 * STEPS)):
        epoch = step // STEPS
        for image, attack_seed, i in zip(images, attack_seeds, idx):
            s = seeds.element_seed(5, epoch, int(i))
            np.testing.assert_array_equal(attack_seed, seeds.derive(s, seeds.ATTACK_SALT))
            params = augment.sample(seeds.derive(s, seeds.AUGMENT_SALT), (8, 8, 1), pad=PAD, cutout=3)
            want = augment.apply(tf.constant(x[i] / np.float32(255)), params, pad=PAD, cutout=3)
            np.testing.assert_array_equal(image, want.numpy())


def test_epochs_are_fresh_permutations_with_fresh_augmentation():
    batches = _batches(_ds(ramp=True), 2 * STEPS)
    order = [np.concatenate([b[2] for b in batches[e * STEPS:(e + 1) * STEPS]]) for e in (0, 1)]
    for o in order:
        assert sorted(o) == list(range(N))  # N is a multiple of B: nothing dropped
    assert not np.array_equal(order[0], order[1])
    images = [np.concatenate([b[0] for b in batches[e * STEPS:(e + 1) * STEPS]]) for e in (0, 1)]
    by_index = [dict(zip(o, im)) for o, im in zip(order, images)]
    # Same picture everywhere, so differences are augmentation: elements differ
    # from each other, and each element differs between epochs.
    assert len({im.tobytes() for im in images[0]}) > 0.8 * N
    same = sum(np.array_equal(by_index[0][i], by_index[1][i]) for i in range(N))
    assert same < 0.2 * N


def test_sampled_params_differ_by_element_and_epoch():
    def params(epoch, i):
        s = seeds.derive(seeds.element_seed(5, epoch, i), seeds.AUGMENT_SALT)
        return tuple(int(v) for v in augment.sample(s, (32, 32, 3), pad=4, cutout=8).values())

    epoch0 = [params(0, i) for i in range(40)]
    epoch1 = [params(1, i) for i in range(40)]
    assert len(set(epoch0)) == 40
    assert sum(a == b for a, b in zip(epoch0, epoch1)) == 0


def test_legacy_draw_index():
    got = [pipelines.legacy_draw_index(p, 4, 2) for p in range(20)]
    # batches 0, 1 -> worker-local batch 0; batches 2, 3 -> local batch 1; batch 4 -> 2
    assert got == [0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2 + [8, 9, 10, 11]


def test_legacy_mode_repeats_across_workers_and_epochs_fixed_mode_does_not():
    legacy = _batches(_ds(ramp=True, augment="legacy", legacy_workers=2), 2 * STEPS)
    fixed = _batches(_ds(ramp=True, augment="fixed"), 2 * STEPS)
    imgs = [b[0] for b in legacy]
    # Workers 0 and 1 share one stream: batch 0 == batch 1, batch 2 == batch 3.
    np.testing.assert_array_equal(imgs[0], imgs[1])
    np.testing.assert_array_equal(imgs[2], imgs[3])
    assert not np.array_equal(imgs[0], imgs[2])  # the stream moves on
    # The stream restarts every epoch: position p has the same params in epoch 1.
    for j in range(STEPS):
        np.testing.assert_array_equal(imgs[j], imgs[STEPS + j])
    # ... although the elements there differ: the shuffle is that of "fixed".
    assert not np.array_equal(legacy[0][2], legacy[STEPS][2])
    for lb, fb in zip(legacy, fixed):
        np.testing.assert_array_equal(lb[1], fb[1])  # attack seeds
        np.testing.assert_array_equal(lb[2], fb[2])  # order
    f = [b[0] for b in fixed]
    assert not np.array_equal(f[0], f[1])
    assert not any(np.array_equal(f[j], f[STEPS + j]) for j in range(STEPS))


def test_resume_starts_exactly_at_the_requested_batch():
    full = _batches(_ds(), 3 * STEPS)
    for start_epoch, start_step in ((1, 3), (2, 0), (0, STEPS - 1)):
        first = start_epoch * STEPS + start_step
        resumed = _batches(_ds(start_epoch=start_epoch, start_step=start_step), 4)
        for got, want in zip(resumed, full[first:first + 4]):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


def test_seeds_do_not_depend_on_the_number_of_replicas():
    single = _batches(_ds(), 3)
    strategy = helpers.mirrored_strategy()
    it = iter(strategy.experimental_distribute_dataset(_ds()))
    for want in single:
        features, labels = next(it)
        parts = strategy.experimental_local_results(features["seed"])
        assert len(parts) == 2 and parts[0].shape[0] == B // 2
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]), want[1])
        images = strategy.experimental_local_results(features["image"])
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in images]), want[0])
        ys = strategy.experimental_local_results(labels)
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in ys]), want[2])


def test_eval_dataset_is_finite_ordered_unaugmented_and_batch_size_independent():
    x, y = _arrays()
    a = _batches(pipelines.eval_dataset(x, y, batch_size=6, seed=3, n=20), 100)
    b = _batches(pipelines.eval_dataset(x, y, batch_size=20, seed=3, n=20), 100)
    assert [len(t[2]) for t in a] == [6, 6, 6, 2] and len(b) == 1
    np.testing.assert_array_equal(np.concatenate([t[1] for t in a]), b[0][1])
    np.testing.assert_array_equal(np.concatenate([t[2] for t in a]), y[:20])
    np.testing.assert_array_equal(b[0][0], x[:20].astype("float32") / np.float32(255))
    want = tf.stack([seeds.derive(seeds.element_seed(3, 0, i), seeds.ATTACK_SALT) for i in range(20)])
    np.testing.assert_array_equal(b[0][1], want.numpy())
    assert sum(len(t[2]) for t in _batches(pipelines.eval_dataset(x, y, batch_size=7), 100)) == N


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images": np.zeros((4, 8, 8, 1), "int32")}, TypeError, "images.dtype=int32"),
        ({"images": np.zeros((4, 8, 8), "uint8")}, ValueError, "rank 4"),
        ({"images": np.full((4, 8, 8, 1), 2.0, "float32")}, ValueError, "max=2"),
        ({"images": np.full((4, 8, 8, 1), np.nan, "float32")}, ValueError, "min=nan"),
        ({"labels": np.array([0, 1, 2])}, ValueError, r"labels.shape=\(3,\) for 4 images"),
        ({"labels": np.array([0, -1, 2, 1])}, ValueError, "min=-1"),
        ({"labels": np.array([0.0, 1, 2, 1])}, TypeError, "labels.dtype=float64"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"batch_size": 5}, ValueError, "batch_size=5"),
        ({"augment": "random"}, ValueError, "augment='random'"),
        ({"seed": 2**31}, ValueError, "seed=2147483648"),
        ({"start_step": 2}, ValueError, "start_step=2"),
        ({"start_epoch": -1}, ValueError, "start_epoch=-1"),
        ({"legacy_workers": 0}, ValueError, "legacy_workers=0"),
        ({"pad": -2}, ValueError, "pad=-2"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {"images": np.zeros((4, 8, 8, 1), "uint8"), "labels": np.array([0, 1, 2, 1]),
            "batch_size": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pipelines.train_dataset(**args)


def test_eval_dataset_validates_too():
    with pytest.raises(ValueError, match="n=-1"):
        pipelines.eval_dataset(np.zeros((4, 8, 8, 1), "uint8"), np.zeros(4, "int64"), batch_size=2, n=-1)
    with pytest.raises(TypeError, match="images.dtype=float64"):
        pipelines.eval_dataset(np.zeros((4, 8, 8, 1)), np.zeros(4, "int64"), batch_size=2)


def test_repeated_augmentation_gives_each_copy_its_own_seed_and_keeps_copy_zero():
    # batch 8 with repeats 4: 2 distinct images a batch, 4 copies each, an epoch of N / 2 batches.
    k = 4
    repeated = _batches(_ds(ramp=True, repeats=k), 2 * N // (B // k))
    plain = _batches(_ds(ramp=True, batch_size=B // k), 2 * N // (B // k))
    seen = set()
    for step, ((images, attack_seeds, idx), (p_images, p_seeds, p_idx)) in enumerate(zip(repeated, plain)):
        np.testing.assert_array_equal(idx, np.repeat(p_idx, k))  # the same order, each index k times in a row
        for j in range(B // k):
            copies = slice(j * k, (j + 1) * k)
            # Copy 0 is the element as it would be without repeats: a run with repeats=1 is unchanged.
            np.testing.assert_array_equal(images[j * k], p_images[j])
            np.testing.assert_array_equal(attack_seeds[j * k], p_seeds[j])
            assert len({tuple(s) for s in attack_seeds[copies]}) == k
            # The ramp image shows its parameters: the copies are augmented differently.
            assert len({im.tobytes() for im in images[copies]}) > 1
        seen.update(idx[:: k].tolist() if step < N // (B // k) else [])
    assert seen == set(range(N))  # one epoch is one pass over the distinct images


def test_repeated_augmentation_resumes_and_refuses_what_it_cannot_do():
    k, steps = 2, N // (B // 2)
    full = _batches(_ds(repeats=k), steps + 3)
    resumed = _batches(_ds(repeats=k, start_epoch=1, start_step=1), 2)
    for got, want in zip(resumed, full[steps + 1:]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="repeats must divide"):
        _ds(repeats=3)
    with pytest.raises(ValueError, match="legacy"):
        _ds(repeats=2, augment="legacy")
