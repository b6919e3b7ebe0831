import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust.attacks import PGD
from tfrobust.data import generated, pipelines
from tfrobust.training import AdversarialModel


def test_load_accepts_the_published_format_and_rejects_bad_files(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, (6, 4, 4, 3)).astype("uint8")
    path = str(tmp_path / "ddpm.npz")
    np.savez(path, image=images, label=np.arange(6) % 3)  # as Gowal et al.'s published samples
    x, y = generated.load(path, image_shape=(4, 4, 3), num_classes=3)
    np.testing.assert_array_equal(x, images)
    assert y.dtype == np.int64 and list(y) == [0, 1, 2, 0, 1, 2]
    ours = str(tmp_path / "ours.npz")
    generated.save(ours, x, y)
    np.testing.assert_array_equal(generated.load(ours)[0], images)
    with pytest.raises(ValueError, match="image shape|the real data"):
        generated.load(path, image_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        generated.load(path, num_classes=2)
    unlabelled = str(tmp_path / "u.npz")
    np.savez(unlabelled, image=images)
    with pytest.raises(ValueError, match="pseudo-label"):
        generated.load(unlabelled)
    assert generated.load(unlabelled, require_labels=False)[1] is None
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, x=images)
    with pytest.raises(ValueError, match="'image'"):
        generated.load(bad)


def test_class_conditional_gaussian_matches_each_class():
    rng = np.random.RandomState(0)
    n = 400
    labels = np.arange(n) % 2
    base = np.where(labels[:, None] == 0, 60.0, 190.0)
    images = np.clip(base + rng.randn(n, 12) * 20.0, 0, 255).astype("uint8").reshape(n, 2, 2, 3)
    gen = generated.ClassConditionalGaussian().fit(images, labels)
    samples, sample_labels = gen.sample(2000, seed=1)
    assert samples.dtype == np.uint8 and samples.shape == (2000, 2, 2, 3)
    assert list(np.bincount(sample_labels)) == [1000, 1000]
    for k in (0, 1):
        real = images[labels == k].reshape(-1, 12).astype(float)
        fake = samples[sample_labels == k].reshape(-1, 12).astype(float)
        np.testing.assert_allclose(fake.mean(0), real.mean(0), atol=3.0)
        np.testing.assert_allclose(fake.std(0), real.std(0), rtol=0.15)
    again, _ = gen.sample(2000, seed=1)
    np.testing.assert_array_equal(again, samples)
    with pytest.raises(ValueError, match="covariance"):
        generated.ClassConditionalGaussian().fit(images[:3], np.array([0, 1, 2]))


def test_pseudo_labels_are_the_teachers_argmax_and_resume(tmp_path, monkeypatch):
    teacher = helpers.tiny_classifier(batch_norm=False)
    images = np.random.RandomState(0).randint(0, 256, (10, 8, 8, 1)).astype("uint8")
    expected = teacher(images.astype("float32") / 255.0, training=False).numpy().argmax(-1)
    labels, confidence = generated.pseudo_label(teacher, images, batch_size=4, verbose=0)
    np.testing.assert_array_equal(labels, expected)
    assert np.all((confidence > 1 / 3 - 1e-6) & (confidence <= 1))

    real_savez, calls = np.savez, []

    def dies_on_second(path, **arrays):
        real_savez(path, **arrays)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt

    directory = str(tmp_path / "pl")
    monkeypatch.setattr(np, "savez", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        generated.pseudo_label(teacher, images, directory, batch_size=4, verbose=0)
    calls.clear()
    monkeypatch.setattr(np, "savez", lambda path, **a: (calls.append(path), real_savez(path, **a)))
    resumed, _ = generated.pseudo_label(teacher, images, directory, batch_size=4, verbose=0)
    assert len(calls) == 2  # batch 1 died before its rename; batches 1 and 2 are redone, not 0
    np.testing.assert_array_equal(resumed, expected)
    with pytest.raises(ValueError, match="another pseudo-labelling"):
        generated.pseudo_label(helpers.tiny_classifier(batch_norm=False, seed=3), images, directory, batch_size=4,
                               verbose=0)


def _sets():
    rng = np.random.RandomState(0)
    real = rng.randint(0, 100, (40, 4, 4, 1)).astype("uint8")  # real pixels < 100
    gen = rng.randint(150, 256, (25, 4, 4, 1)).astype("uint8")  # generated pixels >= 150
    return real, np.arange(40) % 3, gen, np.arange(25) % 3


@pytest.mark.parametrize("fraction, counts", [(0.0, (10, 0)), (0.3, (7, 3)), (0.7, (3, 7)), (1.0, (0, 10))])
def test_mixed_batches_hold_the_set_ratio(fraction, counts):
    real, y, gen, y_gen = _sets()
    ds = pipelines.mixed_train_dataset(real, y, gen, y_gen, batch_size=10, generated_fraction=fraction, seed=0)
    for features, _ in ds.take(6):  # more batches than one pass of the generated set at 0.7
        flags = features["generated"].numpy()
        assert (int((~flags).sum()), int(flags.sum())) == counts
        from_gen = features["image"].numpy().reshape(10, -1).min(1) >= 150 / 255 - 1e-6
        np.testing.assert_array_equal(from_gen, flags)
    assert pipelines.mixed_steps_per_epoch(40, 25, 10, fraction) == (40 // counts[0] if counts[0] else 2)


def test_mixed_stream_resumes_at_any_step_and_seeds_differ_between_streams():
    real, y, gen, y_gen = _sets()
    kwargs = dict(batch_size=10, generated_fraction=0.5, seed=3, augment="fixed", pad=1)
    steps = pipelines.mixed_steps_per_epoch(40, 25, 10, 0.5)  # 8 per epoch
    straight = list(pipelines.mixed_train_dataset(real, y, gen, y_gen, **kwargs).take(steps + 5))
    resumed = list(pipelines.mixed_train_dataset(real, y, gen, y_gen, start_epoch=1, start_step=2,
                                                 **kwargs).take(3))
    for (fa, ya), (fb, yb) in zip(straight[steps + 2:], resumed):
        np.testing.assert_array_equal(fa["image"].numpy(), fb["image"].numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    seeds = straight[0][0]["seed"].numpy()
    assert len({tuple(s) for s in seeds}) == 10


def test_label_smoothing_applies_to_generated_examples_only():
    x, y, s = helpers.toy_data(n=8)
    flags = np.array([False, True] * 4)
    model = AdversarialModel(helpers.tiny_classifier(batch_norm=False), method="standard",
                             generated_label_smoothing=0.2)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.train_on_batch({"image": x, "seed": s, "generated": flags}, y, return_dict=True)
    log_p = np.log(keras.ops.convert_to_numpy(keras.ops.softmax(model.classifier(x, training=False))))
    ce = -log_p[np.arange(8), y]
    smooth = np.where(flags, 0.8 * ce + 0.2 * (-log_p.mean(1)), ce)
    np.testing.assert_allclose(logs["loss"], smooth.mean(), rtol=1e-5)
    assert abs(logs["loss"] - ce.mean()) > 1e-4

    mixed = AdversarialModel(helpers.tiny_classifier(batch_norm=False), attack=PGD(0.1, steps=1),
                             clean_ratio=0.5, generated_label_smoothing=0.2)
    clean, attacked = mixed.objective.split(8)
    # The clean (even) part first, as trained; the objective orders the generated flags the same way.
    assert list(np.concatenate([clean.numpy(), attacked.numpy()])) == [0, 2, 4, 6, 1, 3, 5, 7]


def test_mixed_batches_split_the_distinct_examples_then_repeat_them():
    real, y, gen, y_gen = _sets()
    ds = pipelines.mixed_train_dataset(real, y, gen, y_gen, batch_size=20, generated_fraction=0.3, seed=0,
                                       augment="fixed", pad=1, repeats=2)
    for features, labels in ds.take(3):
        flags = features["generated"].numpy()
        assert (int((~flags).sum()), int(flags.sum())) == (14, 6)  # 7 real and 3 generated images, twice each
        np.testing.assert_array_equal(labels.numpy()[0::2], labels.numpy()[1::2])
        assert len({tuple(s) for s in features["seed"].numpy()}) == 20
    assert pipelines.mixed_steps_per_epoch(40, 25, 20, 0.3, repeats=2) == 40 // 7
