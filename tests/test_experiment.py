"""Training runs from a recipe: checkpoints, resume, and the files a run leaves."""

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
    for name in ("recipe.json", "history.csv", "model.keras", os.path.join("checkpoints", "last.keras")):
        assert os.path.exists(tmp_path / "b" / name)


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
