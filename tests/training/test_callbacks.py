"""Wong et al.'s catastrophic-overfitting guard inside training runs."""

import csv
import io
import json
import os

import numpy as np
import pytest

from tests import helpers, test_experiment
from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust.training import callbacks


def _recipe(epochs, guard=3):
    # A constant learning rate, so that the first epochs of a longer run are those of a shorter one.
    return test_experiment._recipe(epochs).override({
        "attack.name": "fgsm_rs", "attack.steps": 1, "attack.step_size": 0.375, "train.method": "fgsm_rs",
        "train.eps_warmup_epochs": 0.0, "train.overfit_guard": guard})


def _script(monkeypatch, accuracies):
    """Makes the guard's check return `accuracies[epoch]`, recording the epochs it checked."""
    checked = []

    def robust_accuracy(self, epoch):
        checked.append(epoch)
        return accuracies[epoch]

    monkeypatch.setattr(callbacks.OverfitGuard, "_robust_accuracy", robust_accuracy)
    return checked


def _weights(model):
    return [w.numpy() for w in model.classifier.weights]


def _assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_a_fall_in_robust_accuracy_stops_training_and_keeps_the_previous_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    two = experiment.train(_recipe(2, guard=0), str(tmp_path / "two"), verbose=0)

    checked = _script(monkeypatch, [0.30, 0.55, 0.30, 0.9, 0.9])  # epoch 3 (index 2) falls by 0.25
    run = experiment.train(_recipe(5), str(tmp_path / "guarded"), verbose=0)
    assert checked == [0, 1, 2]
    _assert_same(_weights(run.model), _weights(two.model))
    state = json.load(open(tmp_path / "guarded" / "checkpoints" / callbacks.GUARD_STATE))
    assert state["tripped_at"] == 2 and state["robust_accuracy"] == {"0": 0.30, "1": 0.55, "2": 0.30}
    rows = list(csv.DictReader(open(tmp_path / "guarded" / "history.csv")))
    assert [float(r["guard_robust_accuracy"]) for r in rows] == [0.30, 0.55, 0.30]

    # model.keras holds the kept weights, and the same command does not train again.
    import keras

    _assert_same([w.numpy() for w in keras.models.load_model(tmp_path / "guarded" / "model.keras").classifier.weights],
                 _weights(two.model))
    again = experiment.train(_recipe(5), str(tmp_path / "guarded"), verbose=0)
    assert checked == [0, 1, 2]
    _assert_same(_weights(again.model), _weights(two.model))


def test_a_fall_within_the_threshold_does_not_stop_training(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    checked = _script(monkeypatch, [0.5, 0.31, 0.12])  # falls of 0.19 each
    run = experiment.train(_recipe(3), str(tmp_path / "a"), verbose=0)
    assert checked == [0, 1, 2] and int(run.model.optimizer.iterations.numpy()) == 6
    assert json.load(open(tmp_path / "a" / "checkpoints" / callbacks.GUARD_STATE))["tripped_at"] is None


def test_the_guard_compares_with_the_epoch_before_a_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    _script(monkeypatch, [0.5])
    one = experiment.train(_recipe(1), str(tmp_path / "a"), verbose=0)
    one_weights = _weights(one.model)
    # A fresh process would read the previous epoch's accuracy back from the state file.
    checked = _script(monkeypatch, [None, 0.25, 0.9])
    resumed = experiment.train(_recipe(3), str(tmp_path / "a"), verbose=0)
    assert checked == [1]
    _assert_same(_weights(resumed.model), one_weights)


def test_a_fall_in_the_first_epoch_has_nothing_to_keep(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    # Robust accuracy starts from 0, so the first epoch can only fall through a negative threshold;
    # reach the no-earlier-weights case through a state file that says the guard tripped at epoch 0.
    callbacks.write_state(str(tmp_path / "a" / "checkpoints"), {"robust_accuracy": {"0": 0.0}, "tripped_at": 0})
    with pytest.raises(ValueError, match="first epoch"):
        experiment.train(_recipe(2), str(tmp_path / "a"), verbose=0)


def test_the_check_is_the_attacks_accuracy_on_the_epochs_first_training_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    recipe = _recipe(1)
    split = data_lib.load("mnist", "train")
    model = experiment.build_model(recipe, split.info, 3)

    def dataset(epoch):
        return data_lib.train_dataset(split.images, split.labels, batch_size=16, seed=0, start_epoch=epoch,
                                      augment="fixed", pad=2)

    def identity(classifier, x, y, seeds):
        return x

    guard = callbacks.OverfitGuard(identity, callbacks.first_batch_fn(dataset), str(tmp_path))
    guard.set_model(model)
    for epoch in (0, 1):
        x, y, _ = model._unpack(next(iter(dataset(epoch))))
        expected = np.mean(np.argmax(model.classifier(x).numpy(), -1) == y.numpy())
        assert guard._robust_accuracy(epoch) == pytest.approx(expected)
    # A real attack can only lower it.
    from tfrobust.attacks import registry

    pgd = registry.build("pgd", 0.3, "linf", steps=3, step_size=0.1)
    guard = callbacks.OverfitGuard(pgd, callbacks.first_batch_fn(dataset), str(tmp_path))
    guard.set_model(model)
    assert guard._robust_accuracy(1) <= expected


def test_a_corrupt_guard_state_names_the_file(tmp_path):
    (tmp_path / callbacks.GUARD_STATE).write_text("{not json")
    with pytest.raises(ValueError, match=callbacks.GUARD_STATE):
        callbacks.read_state(str(tmp_path))
    assert not os.path.exists(tmp_path / "nothing" / callbacks.GUARD_STATE)
    assert callbacks.read_state(str(tmp_path / "nothing")) == {"robust_accuracy": {}, "tripped_at": None}


def test_training_in_a_pipe_reports_the_batches_of_each_epoch_while_it_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(48, 16))
    monkeypatch.setattr(callbacks.progress, "DEFAULT_INTERVAL", 0.01)
    experiment.train(test_experiment._recipe(2), str(tmp_path), verbose="auto")  # pytest's stdout is no terminal
    lines = capsys.readouterr().out.splitlines()
    for epoch in (1, 2):
        ours = [ln for ln in lines if ln.startswith(f"[epoch {epoch}/2]")]
        assert ours[0] == f"[epoch {epoch}/2] 0/3 batches, 0s elapsed"
        assert ours[-1].startswith(f"[epoch {epoch}/2] 3/3 batches") and ours[-1].endswith("finished")
        assert sum(ln.endswith("finished") for ln in ours) == 1


def test_epoch_progress_counts_a_resumed_epoch_from_its_first_step_and_stops_with_the_fit():
    out = io.StringIO()
    bar = callbacks.EpochProgress(4, 10, first_step=6, interval=60, stream=out)
    bar.on_epoch_begin(1)
    bar.on_train_batch_end(0)  # the first batch of this fit is step 7 of the epoch
    assert bar._bar.describe().startswith("[epoch 2/4] 7/10 batches")
    bar.on_epoch_end(1)
    bar.on_epoch_begin(2)
    assert bar._bar.describe().startswith("[epoch 3/4] 0/10")
    bar.on_train_batch_end(1)
    bar.on_train_end()  # stopped inside an epoch (the overfitting guard): the last line is printed, no thread left
    assert bar._bar is None and out.getvalue().splitlines()[-1].startswith("[epoch 3/4] 2/10 batches")
