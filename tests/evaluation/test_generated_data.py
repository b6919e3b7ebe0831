import numpy as np
import pytest

from tests import helpers
from tfrobust.data import generated
from tfrobust.evaluation import generated_data as gd


def test_knn_distances_match_brute_force_and_exclude_self():
    rng = np.random.RandomState(0)
    a, b = rng.rand(7, 3), rng.rand(11, 3)
    brute = np.sort(np.linalg.norm(a[:, None] - b[None], axis=-1), axis=1)[:, :3]
    np.testing.assert_allclose(gd.knn_distances(a, b, k=3, chunk=2), brute, rtol=1e-5)
    own = np.sort(np.linalg.norm(b[:, None] - b[None], axis=-1), axis=1)[:, 1:3]
    np.testing.assert_allclose(gd.knn_distances(b, b, k=2, exclude_self=True, chunk=4), own, rtol=1e-5)
    with pytest.raises(ValueError, match="k must"):
        gd.knn_distances(b, b, k=11, exclude_self=True)
    with pytest.raises(ValueError, match="features"):
        gd.knn_distances(a, rng.rand(4, 2))
    with pytest.raises(ValueError, match="itself"):
        gd.knn_distances(b[:5], b, exclude_self=True)


def test_duplicates_of_cifar_sized_images_are_exactly_zero_apart():
    # The |a|^2 - 2ab + |b|^2 expansion leaves ~1e-6 of noise on 3072 pixels.
    images = np.random.RandomState(0).randint(0, 256, (300, 32, 32, 3)).astype("uint8")
    assert np.all(gd.knn_distances(images, images.copy(), k=1)[:, 0] == 0.0)
    assert gd.distance_ratio(images.copy(), images) == 0.0


def _brute_coverage(fake, real, k):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    np.fill_diagonal(d_rr, np.inf)
    radius = np.sort(d_rr, axis=1)[:, k - 1]
    return np.mean(np.linalg.norm(real[:, None] - fake[None], axis=-1).min(1) < radius)


def test_coverage_matches_naeem_et_al_by_brute_force_with_duplicates():
    rng = np.random.RandomState(1)
    real = rng.rand(60, 5)
    real[10:16] = real[9]  # a point with k=5 duplicates: its 5-NN radius is 0, so nothing covers it
    fake = np.concatenate([rng.rand(40, 5), real[9:10]])
    for k in (1, 3, 5):
        assert gd.knn_coverage(fake, real, k=k) == pytest.approx(_brute_coverage(fake, real, k))
    assert gd.knn_coverage(real[9:10], real, k=5) == 0.0
    assert gd.knn_coverage(real[9:10], real, k=1) == 0.0  # even its nearest other point is at 0


def test_distance_ratio_is_a_median_not_a_mean():
    real = np.arange(10.0)[:, None]
    # Nearest-real distances 0, 0, 0, 0.5, 50: median 0 (a mean would be 10.1).
    generated = np.array([[0.0], [1.0], [2.0], [3.5], [59.0]])
    assert gd.distance_ratio(generated, real) == 0.0


def test_measures_on_a_line_with_known_answers():
    # Real points at 0, 1, ..., 9 (spacing 1, so m_R = 1).
    real = np.arange(10.0)[:, None]
    assert gd.real_scale(real) == 1.0
    # Midpoints: new points at half the real spacing; copies: memorisation;
    # far points: off the data.
    midpoints = np.arange(10.0)[:, None] + 0.5
    assert gd.distance_ratio(midpoints, real) == pytest.approx(0.5)
    assert gd.distance_ratio(real.copy(), real) == 0.0
    # Each far point is 91..100 from the nearest real point (9): the median is 95.5.
    assert gd.distance_ratio(real + 100.0, real) == pytest.approx(95.5)
    # Self: midpoints are 1 apart like the real set; ten copies of one point are 0 apart.
    assert gd.self_distance_ratio(midpoints, 1.0) == pytest.approx(1.0)
    assert gd.self_distance_ratio(np.full((10, 1), 3.0), 1.0) == 0.0
    # Coverage with k=1: a real point's ball has radius 1 (strict), so a
    # midpoint 0.5 away covers it; points 100 away cover nothing; one point
    # at 4.5 covers 4 and 5 only.
    assert gd.knn_coverage(midpoints, real, k=1) == 1.0
    assert gd.knn_coverage(real + 100.0, real, k=1) == 0.0
    assert gd.knn_coverage(np.array([[4.5]]), real, k=1) == pytest.approx(0.2)


def test_gowal_complementarity_and_coverage_on_a_line_with_known_answers():
    # Train at 0, 2, ..., 18 and test at 1, 3, ..., 19 (gaps of 2 within each set, 1 between).
    train, test = np.arange(0.0, 20.0, 2.0)[:, None], np.arange(1.0, 20.0, 2.0)[:, None]
    # Copies of training points: nearest neighbour in train (distance 0).
    assert gd.complementarity(train.copy(), train, test) == (1.0, 0.0, 0.0)
    # Points far away and 0.1 apart: each other's nearest neighbours.
    far = 100.0 + 0.1 * np.arange(10.0)[:, None]
    assert gd.complementarity(far, train, test) == (0.0, 0.0, 1.0)
    # Points at 0.4, 2.4, ...: 0.4 from train, 0.6 from test, 2 from each other.
    near_train = train + 0.4
    assert gd.complementarity(near_train, train, test) == (1.0, 0.0, 0.0)
    shares = gd.complementarity(np.concatenate([near_train[:5], test[:5] + 0.3]), train, test)
    assert shares == (0.5, 0.5, 0.0) and sum(shares) == 1.0
    # Coverage: a training point's nearest other training point is 2 away, so a generated point
    # within 2 is its nearest neighbour; the far points cover nothing.
    assert gd.coverage(near_train, train) == 1.0
    assert gd.coverage(far, train) == 0.0
    assert gd.coverage(np.array([[4.5]]), train) == pytest.approx(0.2)  # covers 4 and 6 (0.5 and 1.5 < 2)


def test_held_out_real_data_scores_about_one_and_noise_does_not():
    rng = np.random.RandomState(0)
    centres = rng.rand(5, 16) * 4.0
    draw = lambda n: (centres[rng.randint(0, 5, n)] + 0.3 * rng.randn(n, 16))
    train, test, held_out = draw(400), draw(400), draw(400)
    noise = rng.rand(400, 16) * 4.0
    sets = {"held-out": held_out, "noise": noise, "copies": train.copy()}
    rows = {r.name: r for r in gd.generated_set_table(sets, train, test, n=400, k=5)}
    held, noise, copies = rows["held-out"], rows["noise"], rows["copies"]
    assert 0.8 < held.distance_ratio_train < 1.25
    assert 0.8 < held.distance_ratio_self < 1.25
    assert held.knn_coverage_test > 0.8
    assert noise.distance_ratio_train > 2.0 and noise.knn_coverage_train < 0.2
    assert copies.distance_ratio_train == 0.0 and copies.knn_coverage_train == 1.0
    # Gowal et al.'s measures: a sample of the data scores about 1/3 each and covers about half;
    # noise is its own neighbour; copies of the training set are nearest to it.
    assert all(0.2 < v < 0.47 for v in (held.complementarity_train, held.complementarity_test,
                                          held.complementarity_self))
    assert 0.35 < held.coverage_train < 0.65 and 0.35 < held.coverage_test < 0.65
    assert noise.complementarity_self > 0.85 and noise.coverage_train < 0.05
    assert copies.complementarity_train == 1.0 and copies.coverage_train == 1.0
    assert "| noise |" in gd.format_table(list(rows.values()))
    with pytest.raises(ValueError, match="n=500"):
        gd.generated_set_table(sets, train, test, n=500)


def test_mixup_samples_lie_between_their_pairs():
    images = np.stack([np.full((2, 2, 1), v, "uint8") for v in (0, 100, 200)])
    labels = np.array([0, 1, 2])
    mixed, mixed_labels = generated.mixup_samples(images, labels, 50, alpha=1.0, seed=3)
    assert mixed.dtype == np.uint8 and mixed.shape == (50, 2, 2, 1)
    values = mixed[:, 0, 0, 0].astype(int)
    # A mix of two of {0, 100, 200} has a value in [0, 200]; its label is one of the pair.
    assert values.min() >= 0 and values.max() <= 200 and len(set(values)) > 10
    assert set(mixed_labels) <= {0, 1, 2}
    np.testing.assert_array_equal(generated.mixup_samples(images, labels, 50, seed=3)[0], mixed)
    with pytest.raises(ValueError, match="uint8"):
        generated.mixup_samples(images / 255.0, labels, 5)
    # lam near 1 keeps x_i: the label follows the larger share.
    one, one_label = generated.mixup_samples(images, labels, 200, alpha=0.05, seed=0)
    near = np.abs(one[:, 0, 0, 0].astype(int)[:, None] - np.array([0, 100, 200])[None]).min(1) <= 2
    assert near.mean() > 0.7
    picked = np.abs(one[near, 0, 0, 0].astype(int)[:, None] - np.array([0, 100, 200])[None]).argmin(1)
    np.testing.assert_array_equal(one_label[near], picked)


def test_penultimate_features_are_the_input_of_the_logits_layer():
    model = helpers.tiny_classifier(batch_norm=False)
    images = np.random.RandomState(0).randint(0, 256, (5, 8, 8, 1)).astype("uint8")
    features = gd.penultimate_features(model, batch_size=2)(images)
    logits = model(images.astype("float32") / 255.0, training=False).numpy()
    last = model.layers[-1]
    np.testing.assert_allclose(features @ last.kernel.numpy() + last.bias.numpy(), logits, rtol=1e-4, atol=1e-5)


def test_penultimate_features_refuse_a_subclassed_model():
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (keras.ops.shape(x)[0], -1)))

    model = Subclassed()
    model(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="pixel features"):
        gd.penultimate_features(model)


def test_mixup_of_the_reference_has_its_sources_in_the_train_reference():
    rng = np.random.RandomState(0)
    train = rng.randint(0, 256, (400, 4, 4, 1)).astype("uint8")
    labels = rng.randint(0, 3, 400)
    test = rng.randint(0, 256, (100, 4, 4, 1)).astype("uint8")
    rows = {r.name: r for r in gd.compare_generators(train, labels, test, n=50, k=3, seed=1,
                                                     include=("mixup", "mixup of the reference"))}
    # Each blend's dominant source is in the reference only in the second row.
    assert rows["mixup of the reference"].complementarity_train > rows["mixup"].complementarity_train + 0.2
    with pytest.raises(ValueError, match="mixup of the reference"):
        gd.compare_generators(train, labels, test, n=50, include=("mixups",))
