"""Training runs from a recipe: checkpoints, resume, and the files a run leaves."""

import csv
import os

import numpy as np
import pytest

from tests import helpers
from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


def _recipe(epochs):
    return Recipe(
        name="resume_test",
        data=DataConfig(dataset="mnist", batch_size=16, augment="fixed", pad=2),
        model=ModelConfig(name="wong_cnn"),
        attack=AttackConfig(name="pgd", eps=0.3, steps=2, step_size=0.1),
        train=TrainConfig(method="pgd", epochs=epochs, optimizer="adam", learning_rate=1e-3,
                          lr_schedule="constant", eps_warmup_epochs=1.0, val_n=0),
        eval=EvalConfig(attacks=("pgd",), steps=1, restarts=1, n=16),
    )


def test_resume_finishes_with_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    straight = experiment.train(_recipe(3), str(tmp_path / "a"), verbose=0)

    # The same run, stopped after one epoch and restarted with the same command.
    experiment.train(_recipe(1), str(tmp_path / "b"), verbose=0)
    assert experiment.resume_state(str(tmp_path / "b")) == 1
    resumed = experiment.train(_recipe(3), str(tmp_path / "b"), verbose=0)
    assert experiment.resume_state(str(tmp_path / "b")) == 3
    assert int(resumed.model.optimizer.iterations.numpy()) == 9

    for a, b in zip(straight.model.classifier.weights, resumed.model.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    for name in ("recipe.json", "history.csv", "model.keras", os.path.join("checkpoints", "ckpt-e3-s0.keras"),
                 ".tfrobust-run", "final.json"):
        assert os.path.exists(tmp_path / "b" / name)
    assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == ["ckpt-e3-s0.keras", "state.json"]
    # Every epoch's wall time is in the history (this recipe does not validate).
    rows = list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert all(float(r["seconds"]) > 0 and float(r["validation_seconds"]) == 0 for r in rows)
    # A run whose history was begun without these columns keeps its columns when resumed.
    lines = (tmp_path / "b" / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, k in enumerate(header) if not k.endswith("seconds")]  # CSVLogger adds val_ copies too
    (tmp_path / "b" / "history.csv").write_text(
        "\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    experiment.train(_recipe(4), str(tmp_path / "b"), verbose=0)
    rows = list(csv.reader(open(tmp_path / "b" / "history.csv")))
    assert len(rows) == 5 and {len(r) for r in rows} == {len(keep)} and "seconds" not in rows[0]


def _fixed_eps(epochs, steps_per_epoch=None):
    # No eps warm-up: it is counted in epochs, which these runs size differently.
    return _recipe(epochs).override({"train.eps_warmup_epochs": 0.0, "train.steps_per_epoch": steps_per_epoch})


def test_steps_per_epoch_sizes_epochs_without_changing_the_batches(tmp_path, monkeypatch):
    # 48 images in batches of 16: a pass is 3 steps. Six steps as 2 passes,
    # as one 6-step epoch and as three 2-step epochs (stopped after one and
    # resumed, so a resume starts mid-pass) must see the same batches.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    passes = experiment.train(_fixed_eps(2), str(tmp_path / "passes"), verbose=0)
    long = experiment.train(_fixed_eps(1, 6), str(tmp_path / "long"), verbose=0)
    experiment.train(_fixed_eps(1, 2), str(tmp_path / "short"), verbose=0)
    assert experiment.resume_state(str(tmp_path / "short")) == 1
    short = experiment.train(_fixed_eps(3, 2), str(tmp_path / "short"), verbose=0)
    for result in (long, short):
        assert int(result.model.optimizer.iterations.numpy()) == 6
        for a, b in zip(passes.model.classifier.weights, result.model.classifier.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="train.steps_per_epoch"):
        _fixed_eps(1, 0)


def test_a_finished_run_is_not_trained_again(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    first = experiment.train(_recipe(1), str(tmp_path), verbose=0)
    again = experiment.train(_recipe(1), str(tmp_path), verbose=0)
    assert again.history == {}
    np.testing.assert_array_equal(first.model.classifier.weights[0].numpy(),
                                  again.model.classifier.weights[0].numpy())


def test_recipe_trains_under_mirrored_strategy_like_one_device(tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    one = experiment.train(_recipe(1), str(tmp_path / "one"), verbose=0)
    two = experiment.train(_recipe(1), str(tmp_path / "two"), verbose=0, strategy=helpers.mirrored_strategy())
    assert isinstance(two.model.distribute_strategy, tf.distribute.MirroredStrategy)
    for a, b in zip(one.model.classifier.weights, two.model.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("batch_norm, sync_bn", [("bn", True), ("bn", False), ("mixbn", True)])
def test_sync_bn_recipe_trains_under_mirrored_strategy_like_one_device(batch_norm, sync_bn, tmp_path, monkeypatch,
                                                                       capsys):
    import keras

    # float64: in float32 the gradients of a convolution followed by BatchNorm
    # cancel so much that the all-reduce's summation order alone moves them by
    # ~1e-3 relative (measured), which hides the difference this test is about.
    # The recipe builds its model under train.precision's policy ("float32"),
    # which this maps to float64; restoring the previous policy passes through.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    set_policy = keras.config.set_dtype_policy
    monkeypatch.setattr(keras.config, "set_dtype_policy",
                        lambda policy: set_policy("float64" if policy == "float32" else policy))
    recipe = _recipe(1).override({"model.name": "wrn-10-1", "model.batch_norm": batch_norm,
                                  "model.sync_bn": sync_bn, "train.clean_ratio": 0.5})
    one = experiment.train(recipe, str(tmp_path / "one"), verbose=0)
    capsys.readouterr()
    two = experiment.train(recipe, str(tmp_path / "two"), verbose=2, strategy=helpers.mirrored_strategy())
    # Unsynchronised BatchNorm under a strategy is pointed out.
    assert ("BatchNorm is not synchronised, so each of the 2 replicas normalises its own 8 examples"
            in capsys.readouterr().err) == (not sync_bn)
    assert one.model.classifier.weights[0].dtype == "float64" == two.model.classifier.weights[0].dtype
    assert keras.config.dtype_policy().name == "float32"
    # Every weight, BatchNorm's moving statistics included.
    diff = max(float(np.abs(a.numpy() - b.numpy()).max())
               for a, b in zip(one.model.classifier.weights, two.model.classifier.weights))
    if sync_bn:
        assert diff < 1e-9
    else:  # the control: each replica normalised its own half of the batch
        assert diff > 1e-4


def test_unknown_strategy():
    from tfrobust import distribute

    with pytest.raises(ValueError, match="strategy='gpu'"):
        distribute.get_strategy("gpu")


def test_model_config_controls_normalisation_and_init():
    from tfrobust.models import Normalize

    recipe = _recipe(1).override({"model.normalize": "false", "model.init": "torch"})
    clf = experiment.build_classifier(recipe, data_lib.info("mnist"))
    norm = [l for l in clf.layers if isinstance(l, Normalize)][0]
    assert norm.mean is None and norm.std is None
    clf = experiment.build_classifier(_recipe(1), data_lib.info("mnist"))
    assert [l for l in clf.layers if isinstance(l, Normalize)][0].mean == [0.1307]
    with pytest.raises(ValueError, match="model.init"):
        _recipe(1).override({"model.init": "he"})


def _ema_recipe(epochs, decay=0.8, val_n=0, warmup=False):
    recipe = _recipe(epochs)
    return recipe.override({"train.ema_decay": decay, "train.val_n": val_n, "train.val_steps": 1,
                            "train.ema_warmup": str(warmup)})


class _RawWeights:
    """Records the raw first-kernel value after every optimizer step."""

    def __init__(self):
        import keras

        self.values = []
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.values.append(self.model.classifier.trainable_weights[0].numpy().copy())

        self.callback = Callback()


def test_ema_weights_are_the_average_of_the_raw_trajectory():
    import keras

    from tfrobust.attacks import PGD
    from tfrobust.training import AdversarialModel

    x, y, s = helpers.toy_data(n=48)
    model = AdversarialModel(helpers.tiny_classifier(batch_norm=False), attack=PGD(0.1, steps=1))
    model.compile(optimizer=keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.8))
    raw = _RawWeights()
    model.fit({"image": x, "seed": s}, y, batch_size=16, epochs=2, verbose=0, callbacks=[raw.callback])
    expected = raw.values[0]
    for w in raw.values[1:]:
        expected = 0.8 * expected + 0.2 * w
    final = model.classifier.trainable_weights[0].numpy()
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(final, raw.values[-1], atol=1e-4)  # the average, not the last step


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_run_validates_resumes_and_keeps_the_average(tmp_path, monkeypatch, warmup):
    import keras

    from tfrobust.training import optimizers

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    straight = experiment.train(_ema_recipe(2, val_n=16, warmup=warmup), str(tmp_path / "a"), verbose=0)
    assert (type(straight.model.optimizer) is optimizers.Adam) == warmup  # the base recipe uses Adam
    # The last epoch's validation ran on the averaged weights: evaluating the
    # finished model (the average) on the same data gives the same loss.
    test = helpers.fake_split(48, 16)("mnist", "test")
    val_ds = data_lib.eval_dataset(test.images, test.labels, batch_size=500, seed=0, n=16)
    again = straight.model.evaluate(val_ds, verbose=0, return_dict=True)
    np.testing.assert_allclose(straight.history["val_loss"][-1], again["loss"], rtol=1e-5)

    experiment.train(_ema_recipe(1, val_n=16, warmup=warmup), str(tmp_path / "b"), verbose=0)
    resumed = experiment.train(_ema_recipe(2, val_n=16, warmup=warmup), str(tmp_path / "b"), verbose=0)
    for a, b in zip(straight.model.classifier.weights, resumed.model.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # model.keras holds the average; the checkpoint the raw weights.
    saved = keras.models.load_model(str(tmp_path / "a" / "model.keras"))
    from tfrobust import run as run_lib

    checkpoint = keras.models.load_model(run_lib.Run(str(tmp_path / "a")).checkpoint_file())
    w_avg = straight.model.classifier.trainable_weights[0].numpy()
    np.testing.assert_allclose(saved.classifier.trainable_weights[0].numpy(), w_avg, atol=1e-7)
    assert not np.allclose(checkpoint.classifier.trainable_weights[0].numpy(), w_avg, atol=1e-5)
    # A finished run reloaded from its checkpoint gives the average too.
    done = experiment.train(_ema_recipe(2, val_n=16, warmup=warmup), str(tmp_path / "a"), verbose=0)
    np.testing.assert_allclose(done.model.classifier.trainable_weights[0].numpy(), w_avg, atol=1e-6)


def test_mixbn_recipe_builds_mixbn_layers_and_refuses_models_without_batchnorm():
    from tfrobust.models import mixbn

    info = data_lib.info("cifar10")
    recipe = _recipe(1).override({"model.name": "resnet20", "model.batch_norm": "mixbn",
                                  "model.bn_branch": "clean"})
    classifier = experiment.build_classifier(recipe, info)
    assert len(mixbn.mixbn_layers(classifier)) == 21
    assert mixbn.inference_branch(classifier) == "clean"
    with pytest.raises(ValueError, match="batch_norm factory"):
        experiment.build_classifier(_recipe(1).override({"model.batch_norm": "mixbn"}), info)


@pytest.mark.parametrize("name, batch_norm", [("resnet20", "bn"), ("wrn-10-1", "bn"), ("resnet20", "mixbn")])
def test_sync_bn_recipe_builds_only_synchronized_batchnorm(name, batch_norm, tmp_path):
    import keras

    def batch_norms(model):
        return [layer for layer in model._flatten_layers(recursive=True)
                if isinstance(layer, keras.layers.BatchNormalization)]

    info = data_lib.info("cifar10")
    classifier = experiment.build_classifier(
        _recipe(1).override({"model.name": name, "model.batch_norm": batch_norm, "model.sync_bn": True}), info)
    assert batch_norms(classifier) and all(layer.synchronized for layer in batch_norms(classifier))
    plain = experiment.build_classifier(_recipe(1).override({"model.name": name, "model.batch_norm": batch_norm}),
                                        info)
    assert len(batch_norms(plain)) == len(batch_norms(classifier))
    assert not any(layer.synchronized for layer in batch_norms(plain))
    # The flag survives a save, so a resumed run stays synchronised.
    classifier.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert all(layer.synchronized for layer in batch_norms(loaded))
    with pytest.raises(ValueError, match="batch_norm factory"):
        _recipe(1).override({"model.sync_bn": True})


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_sync_bn_recipe_with_a_batch_statistics_attack_is_refused_before_the_generated_set(method, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))

    def no_generated_set(*args, **kwargs):
        raise AssertionError("the generated set was built before the refusal")

    monkeypatch.setattr(experiment.training, "generated_training_set", no_generated_set)
    recipe = _recipe(1).override({"model.name": "wrn-10-1", "model.sync_bn": True, "attack.bn": "batch_stats",
                                  "train.method": method, "data.generated": "gaussian",
                                  "data.generated_fraction": 0.5})
    with pytest.raises(ValueError, match="cannot be used under MirroredStrategy"):
        experiment.train(recipe, str(tmp_path / "run"), verbose=0, strategy=helpers.mirrored_strategy())
    # Inference-mode attacks, and no strategy, are not refused (the generated set is then reached).
    for override, strategy in (({"attack.bn": "inference"}, helpers.mirrored_strategy()), ({}, None)):
        with pytest.raises(AssertionError, match="generated set"):
            experiment.train(recipe.override(override), str(tmp_path / "run"), verbose=0, strategy=strategy)


def test_recipe_with_gaussian_generated_data_and_a_teacher(tmp_path, monkeypatch):
    import json

    import keras

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(40, 16))
    info = data_lib.info("mnist")
    teacher_path = str(tmp_path / "teacher.keras")
    keras.utils.set_random_seed(3)
    experiment.build_classifier(_recipe(1), info).save(teacher_path)
    recipe = _recipe(1).override({"data.generated": "gaussian", "data.generated_fraction": 0.5,
                                  "data.generated_n": 30, "data.teacher": teacher_path,
                                  "train.generated_label_smoothing": 0.1})
    run = str(tmp_path / "run")
    result = experiment.train(recipe, run, verbose=0)
    # 8 real + 8 generated per batch: one pass over the 40 real images is 5 steps.
    assert int(result.model.optimizer.iterations.numpy()) == 5
    # Epochs of a set length: 3 steps; or the real data's pass in whole batches, 40 // 16 = 2 steps.
    fixed = experiment.train(recipe.override({"train.steps_per_epoch": 3}), str(tmp_path / "fixed"), verbose=0)
    assert int(fixed.model.optimizer.iterations.numpy()) == 3
    equal = recipe.override({"train.epoch_length": "real_batches"})
    assert int(experiment.train(equal, str(tmp_path / "equal"), verbose=0).model.optimizer.iterations.numpy()) == 2
    report = json.load(open(os.path.join(run, "generated", "teacher.json")))
    assert 0 <= report["test_accuracy"] <= 1 and report["test_n"] == 16 and sum(report["label_counts"]) == 30
    with np.load(os.path.join(run, "generated", "gaussian.npz")) as z:
        drawn_from, images = z["label"], z["image"]
    taught = np.argmax(keras.models.load_model(teacher_path)(images.astype("float32") / 255.0), -1)
    assert report["agreement_with_generated_labels"] == pytest.approx(np.mean(taught == drawn_from))
    assert "class-conditional Gaussian" in result.train_source
    assert result.model.generated_label_smoothing == 0.1
    with pytest.raises(ValueError, match="generated"):
        _recipe(1).override({"data.generated_fraction": 0.5})


def test_generated_data_runs_resume_mid_pass_with_both_streams_in_place(tmp_path, monkeypatch):
    # 40 real images, 8 real + 8 generated per batch: a pass is 5 steps, and
    # 2-step epochs end mid-pass in both streams (the generated one has 30).
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(40, 16))

    def recipe(epochs):
        return _fixed_eps(epochs, 2).override({"data.generated": "gaussian", "data.generated_fraction": 0.5,
                                               "data.generated_n": 30})

    straight = experiment.train(recipe(3), str(tmp_path / "a"), verbose=0)
    experiment.train(recipe(1), str(tmp_path / "b"), verbose=0)
    experiment.train(recipe(2), str(tmp_path / "b"), verbose=0)
    resumed = experiment.train(recipe(3), str(tmp_path / "b"), verbose=0)
    assert int(resumed.model.optimizer.iterations.numpy()) == 6
    for a, b in zip(straight.model.classifier.weights, resumed.model.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_resuming_with_another_recipe_is_refused(tmp_path, monkeypatch):
    # The checkpoint holds the old schedule and EMA decay while the data
    # position would follow the new recipe: a silent mix of two runs.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    run = str(tmp_path / "run")
    experiment.train(_recipe(1), run, verbose=0)
    with pytest.raises(ValueError, match=r"train.learning_rate: 0.001 -> 0.002.*--fresh"):
        experiment.train(_recipe(2).override({"train.learning_rate": 2e-3}), run, verbose=0)
    # More epochs, the evaluation settings or the data directory may change.
    again = experiment.train(_recipe(2).override({"eval.n": 8, "data.data_dir": str(tmp_path)}), run, verbose=0)
    assert int(again.model.optimizer.iterations.numpy()) == 6
    # Starting again is allowed.
    fresh = experiment.train(_recipe(1).override({"train.learning_rate": 2e-3}), run, verbose=0, resume=False)
    assert int(fresh.model.optimizer.iterations.numpy()) == 3


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_adversarial_training(tmp_path, monkeypatch, precision):
    import keras
    import tensorflow as tf

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    recipe = _recipe(1).override({"train.precision": precision})
    result = experiment.train(recipe, str(tmp_path), verbose=0)
    model = result.model
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    compute = {layer.compute_dtype for layer in model.classifier.layers if layer.weights}
    assert compute == {precision.split("_")[1]}
    assert all(w.dtype == "float32" for w in model.classifier.weights)
    assert np.isfinite(result.history["loss"][-1])
    if precision == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # The attack stays float32 in pixel space and still moves the images.
    x, y, s = helpers.toy_data(n=4, shape=(28, 28, 1))
    x_adv = model._train_attack_fn(tf.constant(x), tf.constant(y), tf.constant(s), tf.constant(1.0))
    assert x_adv.dtype == tf.float32 and float(tf.reduce_max(tf.abs(x_adv - x))) > 0.1

    # Evaluation and export load the run computing in float32, with the trained weights.
    loaded, _ = experiment.load_classifier(str(tmp_path))
    assert {layer.compute_dtype for layer in loaded.layers if layer.weights} == {"float32"}
    reference = experiment.build_classifier(recipe.override({"train.precision": "float32"}), data_lib.info("mnist"))
    reference.set_weights(model.classifier.get_weights())
    low = model.classifier(tf.constant(x)).numpy().astype("float32")
    full = loaded(tf.constant(x)).numpy()
    assert loaded(tf.constant(x)).dtype == tf.float32
    np.testing.assert_allclose(full, reference(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(full - low)) > 1e-4  # the control: the 16-bit pass rounds


def test_bfloat16_training_attack_with_a_float32_model(tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    recipe = _recipe(1).override({"attack.precision": "bfloat16"})
    assert experiment.training_attack(recipe.attack).precision == "bfloat16"
    result = experiment.train(recipe, str(tmp_path), verbose=0)
    model = result.model
    assert {layer.compute_dtype for layer in model.classifier.layers if layer.weights} == {"float32"}
    assert np.isfinite(result.history["loss"][-1])
    x, y, s = helpers.toy_data(n=4, shape=(28, 28, 1))
    x_adv = model._train_attack_fn(tf.constant(x), tf.constant(y), tf.constant(s), tf.constant(1.0))
    assert x_adv.dtype == tf.float32 and float(tf.reduce_max(tf.abs(x_adv - x))) > 0.1
    with pytest.raises(ValueError, match="attack.precision"):
        recipe.override({"attack.precision": "float16"})


def test_mixed_float16_run_resumes_with_its_loss_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    experiment.train(_recipe(1).override({"train.precision": "mixed_float16"}), str(tmp_path), verbose=0)
    resumed = experiment.train(_recipe(2).override({"train.precision": "mixed_float16"}), str(tmp_path), verbose=0)
    assert int(resumed.model.optimizer.iterations.numpy()) == 4
    assert resumed.model.classifier.layers[-1].compute_dtype == "float16"


_KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from tests import helpers
from tfrobust import data as data_lib, experiment
from tfrobust.training import callbacks as callbacks_lib
from tests.test_experiment import _kill_recipe
data_lib.load = helpers.fake_split(64, 16)
kill_after = int(sys.argv[2])
if kill_after:
    steps = []
    original = callbacks_lib.EpochCheckpoint.on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        original(self, batch, logs)
        steps.append(batch)
        if len(steps) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    callbacks_lib.EpochCheckpoint.on_train_batch_end = on_train_batch_end
result = experiment.train(_kill_recipe(), sys.argv[1], verbose=0)
import numpy as np
np.savez(os.path.join(sys.argv[1], "weights.npz"), *[w.numpy() for w in result.model.classifier.weights])
"""


def _kill_recipe():
    # 64 images / 16 = 4 steps per epoch, a checkpoint every 2 steps, op determinism on.
    return _recipe(3).override({"train.checkpoint_every": 2, "train.deterministic": True})


def test_sigkill_mid_epoch_then_the_same_command_finishes_with_the_same_weights(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(repo=repo))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def run(directory, kill_after):
        return subprocess.run([sys.executable, str(script), str(directory), str(kill_after)], env=env,
                              capture_output=True, text=True, cwd=repo)

    straight = run(tmp_path / "straight", 0)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "killed", 7)  # global step 7: epoch 2, after its mid-epoch checkpoint at step 2
    assert killed.returncode == -9
    assert experiment.resume_position(str(tmp_path / "killed")) == (1, 2)
    again = run(tmp_path / "killed", 0)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming" in again.stderr and "step 2 of epoch 2" in again.stderr
    a = np.load(tmp_path / "straight" / "weights.npz")
    b = np.load(tmp_path / "killed" / "weights.npz")
    assert len(a.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    history = (tmp_path / "killed" / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]


def test_clear_run_can_keep_the_other_workers_directories(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".tfrobust-run").write_text("")
    (run / "workers" / "worker_1").mkdir(parents=True)
    (run / "history.csv").write_text("epoch\n")
    (run / "workers" / "worker_1" / "command.txt").write_text("x\n")
    experiment.clear_run(str(run), keep=("workers",))
    assert sorted(os.listdir(run)) == [".tfrobust-run", "workers"]
    assert (run / "workers" / "worker_1" / "command.txt").exists()
    experiment.clear_run(str(run))
    assert os.listdir(run) == [".tfrobust-run"]


def test_cosine_warmup_nesterov_and_the_model_activation_reach_keras():
    # Gowal et al.'s code: 0 -> peak linearly over the warm-up, then cosine to 0; Nesterov SGD; swish WRN.
    recipe = _recipe(10).override({"train.optimizer": "sgd", "train.lr_schedule": "cosine", "train.learning_rate": 0.4,
                                   "train.lr_warmup_epochs": 2, "train.nesterov": "true"})
    opt = experiment.build_optimizer(recipe.train, 100)
    schedule = opt._learning_rate
    got = [float(schedule(t)) for t in (0, 10, 20, 60, 100)]
    np.testing.assert_allclose(got, [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)
    assert opt.nesterov
    plain = experiment.build_optimizer(recipe.override({"train.lr_warmup_epochs": 0, "train.nesterov": "false"}).train, 100)
    assert float(plain._learning_rate(0)) == pytest.approx(0.4) and not plain.nesterov
    with pytest.raises(ValueError, match="train.lr_warmup_epochs"):
        recipe.override({"train.lr_schedule": "cyclic"})
    with pytest.raises(ValueError, match="train.nesterov"):
        recipe.override({"train.optimizer": "adam"})
    with pytest.raises(ValueError, match="model.activation"):
        recipe.override({"model.activation": "swish"})  # the base model is not a WRN
    with pytest.raises(ValueError, match="model.activation"):
        recipe.override({"model.name": "wrn-10-1", "model.activation": "gelu"})
    keep_bn = experiment.build_optimizer(recipe.override({"train.decay_batch_norm": "false",
                                                          "train.weight_decay": 5e-3}).train, 100)
    import keras

    from tfrobust.training import optimizers

    assert type(keep_bn) is optimizers.SGD and not keep_bn.decay_batch_norm and keep_bn.nesterov
    assert type(opt) is keras.optimizers.SGD  # no tfrobust option asked for: Keras's own class
    wrn = recipe.override({"model.name": "wrn-10-1", "model.activation": "swish"})
    classifier = experiment.build_classifier(wrn, data_lib.info("cifar10"))
    assert "swish" in classifier.name
    assert "relu" in experiment.build_classifier(wrn.override({"model.activation": "none"}), data_lib.info("cifar10")).name


def test_repeated_augmentation_run_takes_a_pass_over_the_distinct_images_per_epoch(tmp_path, monkeypatch):
    # 48 images, batches of 16 = 8 distinct x 2 copies: an epoch is 6 steps, not 3.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    run = experiment.train(_recipe(1).override({"data.repeats": 2}), str(tmp_path / "r"), verbose=0)
    assert int(run.model.optimizer.iterations.numpy()) == 6
    with pytest.raises(ValueError, match="data.repeats"):
        _recipe(1).override({"data.repeats": 3})
    with pytest.raises(ValueError, match="data.repeats"):
        _recipe(1).override({"data.repeats": 2, "data.augment": "legacy"})


def test_the_recipes_trades_start_and_step_rule_reach_the_model():
    recipe = _recipe(1).override({"train.method": "trades", "train.trades_init": "uniform", "attack.step_rule": "adam",
                                  "attack.step_schedule": "1:0.1", "attack.bn": "batch_stats"})
    model = experiment.build_model(recipe, data_lib.info("mnist"), 4)
    a = model.attack
    assert (a.init, a.loss, a.step_rule, a.step_schedule, a.bn) == ("uniform", "kl", "adam", ((1, 0.1),), "batch_stats")
    assert model.trades_init == "uniform" and model.trades_bn == "separate"
    assert experiment.build_model(recipe.override({"train.trades_bn": "adversarial"}), data_lib.info("mnist"),
                                  4).trades_bn == "adversarial"
    default = experiment.build_model(recipe.override({"train.trades_init": "gaussian"}), data_lib.info("mnist"), 4)
    assert default.attack.init == "gaussian"


def test_the_cyclic_schedule_peaks_where_the_recipe_says():
    # Wong et al.'s code (a triangular CyclicLR) peaks half way; the default follows their paper's 2/5.
    base = _recipe(10).override({"train.optimizer": "sgd", "train.lr_schedule": "cyclic", "train.learning_rate": 0.2})
    for peak, expected in ((0.4, [0.0, 0.2, 0.2 * 50 / 60, 0.0]), (0.5, [0.0, 0.16, 0.2, 0.0])):
        schedule = experiment.build_optimizer(base.override({"train.lr_peak": peak}).train, 100)._learning_rate
        np.testing.assert_allclose([float(schedule(t)) for t in (0, 40, 50, 100)], expected, atol=1e-6)
    assert base.train.lr_peak == 0.4
    with pytest.raises(ValueError, match=r"train.lr_peak must be a number in \(0, 1\)"):
        base.override({"train.lr_peak": 1})
    with pytest.raises(ValueError, match="train.lr_peak must be 0.4 .* unless train.lr_schedule is 'cyclic'"):
        base.override({"train.lr_peak": 0.5, "train.lr_schedule": "constant"})


@pytest.mark.parametrize("assignments, match", [
    ({"train.overfit_guard": -1}, "train.overfit_guard must be an int >= 0"),
    ({"train.overfit_guard": 2.5}, "train.overfit_guard must be an int >= 0"),
    ({"train.overfit_guard": 5, "train.method": "standard"}, "train.overfit_guard must be 0 for standard"),
    ({"train.overfit_guard_drop": 0}, r"train.overfit_guard_drop must be a number in \(0, 1\]"),
    ({"train.overfit_guard_drop": 1.5}, r"train.overfit_guard_drop must be a number in \(0, 1\]"),
])
def test_bad_overfit_guard_settings_name_the_key(assignments, match):
    with pytest.raises(ValueError, match=match):
        _recipe(2).override(assignments)


@pytest.mark.parametrize("assignments, match", [
    ({"eval.n": 0}, "eval.n must be an int >= 1. Received: eval.n=0"),
    ({"eval.n": -5}, "eval.n=-5"),
    ({"eval.n": 2.5}, "eval.n must be an int >= 1"),
    ({"eval.batch_size": 0}, "eval.batch_size must be an int >= 1"),
    ({"eval.steps": 0}, "eval.steps must be an int >= 1. Received: eval.steps=0"),
    ({"eval.restarts": 0}, "eval.restarts must be an int >= 1"),
    ({"eval.apgd_steps": 0}, "eval.apgd_steps must be an int >= 1"),
    ({"eval.apgd_restarts": 0}, "eval.apgd_restarts must be an int >= 1"),
    ({"eval.queries": 0}, "eval.queries must be an int >= 1"),
    ({"eval.eps": (0.0,)}, "eval.eps must be > 0"),
    ({"eval.eps": (0.3, float("inf"))}, "eval.eps must be a finite number"),
    ({"eval.attacks": None}, "eval.attacks must be a list of attack names"),
])
def test_evaluation_settings_are_recipe_keys_checked_by_name(assignments, match):
    with pytest.raises(ValueError, match=match):
        _recipe(1).override(assignments)


def test_evaluate_takes_every_setting_from_the_recipe():
    recipe = _recipe(1)
    (pgd,) = experiment.eval_attacks(recipe)
    assert (pgd.steps, pgd.restarts) == (recipe.eval.steps, recipe.eval.restarts)
    (pgd,) = experiment.eval_attacks(recipe.override({"eval.steps": 3, "eval.restarts": 2, "eval.eps": "0.1"}))
    assert (pgd.steps, pgd.restarts, pgd.eps) == (3, 2, 0.1)
    apgd, fab = experiment.eval_attacks(recipe.override({"eval.attacks": "apgd-ce,fab", "eval.apgd_restarts": 2}))
    assert (apgd.restarts, fab.restarts) == (2, 2)
    with pytest.raises(TypeError):
        experiment.evaluate(helpers.tiny_classifier((28, 28, 1), 10), recipe, n=5)
    report = experiment.evaluate(helpers.tiny_classifier((28, 28, 1), 10),
                                 recipe.override({"eval.attacks": (), "eval.n": 7}), verbose=0)
    assert (report.n, report.results, report.checks) == (7, [], "off")


def test_evaluate_on_an_empty_test_split_raises_a_clear_error(monkeypatch):
    empty = data_lib.load("mnist", "test")
    empty = type(empty)(images=empty.images[:0], labels=empty.labels[:0], info=empty.info, source="an empty npz")
    monkeypatch.setattr(data_lib, "load", lambda *a, **k: empty)
    with pytest.raises(ValueError, match="test split from an empty npz is empty"):
        experiment.evaluate(helpers.tiny_classifier((28, 28, 1), 10), _recipe(1), verbose=0)
