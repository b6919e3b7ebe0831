import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust import landscape
from tfrobust.attacks import PGD


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.ReLU(),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def _data(n=24):
    x, y, _ = helpers.toy_data(n=n)
    return x, y


def test_filter_normalised_directions_match_each_filters_norm():
    model = _model()
    d = landscape.random_direction(model, seed=3)
    for w, dw in zip(model.trainable_weights, d):
        w = w.numpy()
        if w.ndim == 1:
            np.testing.assert_array_equal(dw, 0.0)  # biases left out, as Li et al.
            continue
        w_norms = np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0)
        d_norms = np.linalg.norm(dw.reshape(-1, w.shape[-1]), axis=0)
        np.testing.assert_allclose(d_norms, w_norms, rtol=1e-5)
    layer = landscape.random_direction(model, seed=3, norm="layer", ignore_vectors=False)
    for w, dw in zip(model.trainable_weights, layer):
        np.testing.assert_allclose(np.linalg.norm(dw), np.linalg.norm(w.numpy()), rtol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        landscape.normalize_direction(d, [w.numpy() for w in model.trainable_weights], norm="l7")


def test_grid_centre_is_the_model_and_weights_are_restored():
    model = _model()
    x, y = _data()
    before = [w.numpy().copy() for w in model.weights]
    d1, d2 = landscape.random_direction(model, 1), landscape.random_direction(model, 2)
    grid = landscape.evaluate_grid(model, x, y, [d1, d2], landscape.grid_coordinates((-1, 1), 5, 2),
                                   batch_size=10, verbose=0)
    assert grid["loss"].shape == (5, 5) and np.all(np.isfinite(grid["loss"]))
    logits = model(x, training=False)
    expected = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    np.testing.assert_allclose(grid["loss"][2, 2], expected, rtol=1e-5)
    assert grid["loss"][0, 0] != pytest.approx(grid["loss"][2, 2])
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_interpolation_reaches_the_other_model():
    a, b = _model(1), _model(2)
    x, y = _data()
    grid = landscape.evaluate_grid(a, x, y, [landscape.interpolation_direction(a, b)], [np.array([0.0, 1.0])],
                                   verbose=0)
    loss_b = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, b(x, training=False)))
    np.testing.assert_allclose(grid["loss"][1], loss_b, rtol=1e-5)


def test_adversarial_grid_recomputes_the_attack_and_is_worse():
    model = _model()
    x, y = _data()
    d = [landscape.random_direction(model, 1)]
    axes = [np.array([-0.5, 0.0, 0.5])]
    clean = landscape.evaluate_grid(model, x, y, d, axes, verbose=0)
    adv = landscape.evaluate_grid(model, x, y, d, axes, attack=PGD(0.1, steps=2), verbose=0)
    assert np.all(adv["loss"] > clean["loss"])
    assert adv["meta"]["attack"]["eps"] == 0.1


def test_an_interrupted_grid_resumes_and_another_grid_is_refused(tmp_path, monkeypatch):
    model = _model()
    x, y = _data()
    d = [landscape.random_direction(model, 1)]
    axes = landscape.grid_coordinates((-1, 1), 6)
    straight = landscape.evaluate_grid(model, x, y, d, axes, verbose=0)
    path = str(tmp_path / "grid.npz")
    real = landscape._Evaluator.__call__
    calls = []

    def dies_after_three(self):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(landscape._Evaluator, "__call__", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        landscape.evaluate_grid(model, x, y, d, axes, path=path, verbose=0)
    calls.clear()
    monkeypatch.setattr(landscape._Evaluator, "__call__", lambda self: (calls.append(1), real(self))[1])
    resumed = landscape.evaluate_grid(model, x, y, d, axes, path=path, verbose=0)
    assert len(calls) == 3  # only the missing half
    np.testing.assert_allclose(resumed["loss"], straight["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="another grid"):
        landscape.evaluate_grid(model, x, y, d, landscape.grid_coordinates((-2, 2), 6), path=path, verbose=0)


def test_a_grid_with_an_attack_resumes_also_from_a_file_older_than_an_attack_parameter(tmp_path):
    model = _model()
    x, y = _data()
    d = [landscape.random_direction(model, 1)]
    axes = landscape.grid_coordinates((-1, 1), 3)
    attack = PGD(0.1, steps=1)
    path = str(tmp_path / "grid.npz")
    first = landscape.evaluate_grid(model, x, y, d, axes, attack=attack, path=path, verbose=0)
    again = landscape.evaluate_grid(model, x, y, d, axes, attack=attack, path=path, verbose=0)
    np.testing.assert_array_equal(again["loss"], first["loss"])
    # The file as a version without step_rule / step_schedule wrote it.
    with np.load(path) as z:
        saved = {k: z[k] for k in z.files}
    meta = json.loads(str(saved["meta"]))
    del meta["attack"]["step_rule"], meta["attack"]["step_schedule"]
    np.savez(path, loss=saved["loss"], accuracy=saved["accuracy"], meta=json.dumps(meta))
    old = landscape.evaluate_grid(model, x, y, d, axes, attack=attack, path=path, verbose=0)
    np.testing.assert_array_equal(old["loss"], first["loss"])
    with pytest.raises(ValueError, match="another grid"):
        landscape.evaluate_grid(model, x, y, d, axes, attack=attack.replace(steps=2), path=path, verbose=0)


def test_recomputed_bn_statistics_are_the_batch_mean_and_are_restored():
    keras.utils.set_random_seed(0)
    bn = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Sequential([keras.Input((8, 8, 1)), bn, keras.layers.Flatten(), keras.layers.Dense(3)])
    x, y = _data(n=30)
    ds = landscape.pipelines.eval_dataset(x, y, batch_size=10)
    landscape.recompute_bn_statistics(model, ds, batches=3)
    np.testing.assert_allclose(bn.moving_mean.numpy(), [x.mean()], rtol=1e-5)  # equal-size batches
    assert bn.momentum == 0.9
    bn.moving_mean.assign([7.0])
    landscape.evaluate_grid(model, x, y, [landscape.random_direction(model, 1)], [np.array([0.0, 0.5])],
                            bn="recompute", bn_batches=2, batch_size=10, verbose=0)
    assert bn.moving_mean.numpy()[0] == 7.0


def test_grid_under_mirrored_strategy_equals_one_device():
    model = _model()
    x, y = _data()
    d = [landscape.random_direction(model, 1)]
    axes = [np.array([-0.5, 0.5])]
    one = landscape.evaluate_grid(model, x, y, d, axes, attack=PGD(0.1, steps=1), batch_size=12, verbose=0)
    two = landscape.evaluate_grid(model, x, y, d, axes, attack=PGD(0.1, steps=1), batch_size=12, verbose=0,
                                  strategy=helpers.mirrored_strategy())
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["accuracy"], one["accuracy"])


def test_hessian_eigenvalue_and_loss_increase_on_a_known_quadratic():
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(6, 6))
    eigenvalues = np.array([5.0, 2.0, 1.0, 0.5, 0.1, -0.3])
    a = tf.constant(q @ np.diag(eigenvalues) @ q.T, tf.float64)
    w = tf.Variable(tf.zeros([6], tf.float64))

    def loss_fn():
        return 0.5 * tf.tensordot(w, tf.linalg.matvec(a, w), 1)

    top = landscape.hessian_top_eigenvalue(loss_fn, [w], iterations=200, tol=1e-10)
    np.testing.assert_allclose(top, 5.0, rtol=1e-4)
    d = rng.randn(6)
    mean, each = landscape.loss_increase(loss_fn, [w], [[d]], radius=0.3)
    np.testing.assert_allclose(mean, 0.5 * 0.09 * d @ a.numpy() @ d, rtol=1e-10)
    np.testing.assert_array_equal(w.numpy(), 0.0)


def test_sharpness_numbers_on_a_model_and_plots(tmp_path):
    model = _model()
    x, y = _data()
    numbers = landscape.sharpness(model, x, y, radius=0.2, directions=2, hessian_iterations=5)
    assert numbers["top_hessian_eigenvalue"] > 0 and np.isfinite(numbers["loss_increase"])
    d1, d2 = landscape.random_direction(model, 1), landscape.random_direction(model, 2)
    for dims, dirs in ((1, [d1]), (2, [d1, d2])):
        grid = landscape.evaluate_grid(model, x, y, dirs, landscape.grid_coordinates((-1, 1), 4, dims),
                                       verbose=0)
        path = tmp_path / f"g{dims}.png"
        landscape.plot(grid, str(path), title="t")
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_cli_landscape_writes_grid_plot_and_numbers(tmp_path, capsys):
    import json

    from tfrobust import cli

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 5, strides=4),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    out = str(tmp_path / "ls")
    args = ["landscape", path, "--dataset", "mnist", "--out", out, "--dims", "2", "--points", "3", "--n", "20",
            "--sharpness-n", "20", "--attack", "pgd", "--eps", "0.1", "--steps", "1"]
    assert cli.main(args) == 0
    numbers = json.load(open(f"{out}/sharpness.json"))
    assert numbers["grid"]["shape"] == [3, 3] and numbers["grid"]["attack"]["steps"] == 1
    assert "top Hessian eigenvalue" in capsys.readouterr().out
    assert open(f"{out}/landscape.png", "rb").read(4) == b"\x89PNG"
    assert cli.main(args) == 0  # resumes the finished grid


def test_spearman_matches_hand_ranks():
    assert landscape.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert landscape.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 - 6 * 4 / (4 * 15) = 0.6.
    assert landscape.spearman([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    # Ties share their average rank: (1.5, 1.5, 3) against (1, 2, 3).
    expected = np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1]
    assert landscape.spearman([7, 7, 9], [1, 2, 3]) == pytest.approx(expected)
    assert np.isnan(landscape.spearman([1, 1, 1], [1, 2, 3]))


def test_geometry_cli_table_from_runs(tmp_path, capsys):
    from tfrobust import cli

    runs = []
    for i, (ssim, eig, inc) in enumerate([(0.01, 5.0, 0.2), (0.03, 2.0, 0.1), (0.02, 9.0, 0.4)]):
        run = tmp_path / f"model{i}"
        (run / "landscape").mkdir(parents=True)
        (run / "eval.json").write_text(json.dumps({"clean_accuracy": 0.9 - i / 10, "results": [
            {"attack": "fgsm", "norm": "linf", "eps": 8 / 255, "accuracy": 0.1 * i, "ssim_distance": ssim},
            {"attack": "worst_case", "norm": "linf", "eps": 8 / 255, "accuracy": 0.0}]}))
        (run / "landscape" / "sharpness.json").write_text(json.dumps(
            {"top_hessian_eigenvalue": eig, "loss_increase": inc}))
        runs.append(str(run))
    out = str(tmp_path / "geometry.json")
    assert cli.main(["geometry", *runs, "--json", out]) == 0
    table = json.load(open(out))
    # 1-SSIM ranks (1, 3, 2); eigenvalue ranks (2, 1, 3) and loss-increase ranks (2, 1, 3): rho = -0.5.
    assert table["spearman"]["fgsm linf 0.03137"]["top_hessian_eigenvalue"] == pytest.approx(-0.5)
    assert table["spearman"]["fgsm linf 0.03137"]["loss_increase"] == pytest.approx(-0.5)
    text = capsys.readouterr().out
    assert "| model0 | 90.0 |" in text and "Spearman" in text
    with pytest.raises(FileNotFoundError, match="tfrobust landscape"):
        landscape.geometry_table([str(tmp_path)])


def test_2d_plot_handles_losses_over_orders_of_magnitude_and_a_flat_grid(tmp_path):
    axes = [np.linspace(-1, 1, 5)] * 2
    a, b = np.meshgrid(*axes, indexing="ij")
    for name, loss in (("steep", 0.5 + 400.0 * (a ** 2 + b ** 2) ** 3), ("flat", np.full((5, 5), 0.7))):
        path = tmp_path / f"{name}.png"
        landscape.plot({"axes": axes, "loss": loss, "accuracy": np.zeros((5, 5))}, str(path), title=name)
        assert path.read_bytes()[:4] == b"\x89PNG"
