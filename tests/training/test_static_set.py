import math
import os

import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust.attacks import FGSM, PGD
from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig
from tfrobust.training import static_set


def _data(n=10):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (n, 8, 8, 1)).astype("uint8")
    labels = (np.arange(n) % 3).astype("int64")
    return images, labels


def test_stored_examples_stay_in_the_whole_pixel_ball_and_are_deterministic(tmp_path):
    model = helpers.tiny_classifier(batch_norm=False)
    images, labels = _data()
    eps = 0.1  # 25.5 grey levels: rounding alone could reach 26
    attack = PGD(eps, steps=2)
    adv = static_set.generate(model, images, labels, attack, str(tmp_path / "a"), batch_size=4, verbose=0)
    assert adv.dtype == np.uint8 and adv.shape == images.shape
    delta = np.abs(adv.astype(int) - images.astype(int))
    assert delta.max() <= math.floor(255 * eps)
    assert delta.max() >= 20  # the attack did move the images
    again = static_set.generate(model, images, labels, attack, str(tmp_path / "b"), batch_size=4, verbose=0)
    np.testing.assert_array_equal(adv, again)
    np.testing.assert_array_equal(static_set.load(str(tmp_path / "a")), adv)


def test_an_interrupted_generation_resumes_with_the_missing_batches_only(tmp_path, monkeypatch):
    model = helpers.tiny_classifier(batch_norm=False)
    images, labels = _data()
    attack = FGSM(8 / 255)
    straight = static_set.generate(model, images, labels, attack, str(tmp_path / "s"), batch_size=4, verbose=0)

    calls = []
    real_savez = np.savez

    def savez_then_die(path, **arrays):
        real_savez(path, **arrays)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing batch 2's file

    directory = str(tmp_path / "r")
    monkeypatch.setattr(np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        static_set.generate(model, images, labels, attack, directory, batch_size=4, verbose=0)
    monkeypatch.setattr(np, "savez", real_savez)
    assert sorted(f for f in os.listdir(directory) if f.startswith("batch_") and f.endswith("0.npz")) \
        == ["batch_000000.npz"]
    with pytest.raises(FileNotFoundError, match="unfinished"):
        static_set.load(directory)
    written = []
    monkeypatch.setattr(np, "savez", lambda path, **a: (written.append(path), real_savez(path, **a)))
    resumed = static_set.generate(model, images, labels, attack, directory, batch_size=4, verbose=0)
    assert len(written) == 2  # batches 1 and 2 of 0..2
    np.testing.assert_array_equal(resumed, straight)


def test_another_attack_or_model_is_refused(tmp_path):
    model = helpers.tiny_classifier(batch_norm=False)
    images, labels = _data()
    static_set.generate(model, images, labels, FGSM(8 / 255), str(tmp_path), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="another adversarial set"):
        static_set.generate(model, images, labels, FGSM(4 / 255), str(tmp_path), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="another adversarial set"):
        static_set.generate(helpers.tiny_classifier(batch_norm=False, seed=2), images, labels, FGSM(8 / 255),
                            str(tmp_path), batch_size=4, verbose=0)


def test_a_set_written_before_a_new_attack_parameter_still_resumes(tmp_path):
    # Sets stored by an older tfrobust have attack configs without the
    # parameters added since; at their defaults they are the same attack.
    import json

    model = helpers.tiny_classifier(batch_norm=False)
    images, labels = _data()
    first = static_set.generate(model, images, labels, FGSM(8 / 255), str(tmp_path), batch_size=4, verbose=0)
    manifest = tmp_path / static_set.MANIFEST
    saved = json.loads(manifest.read_text())
    for added in ("precision", "random_target"):
        del saved["attack"][added]
    manifest.write_text(json.dumps(saved))
    again = static_set.generate(model, images, labels, FGSM(8 / 255), str(tmp_path), batch_size=4, verbose=0)
    np.testing.assert_array_equal(again, first)
    assert static_set.load(str(tmp_path)).shape == first.shape
    with pytest.raises(ValueError, match="another adversarial set"):
        static_set.generate(model, images, labels, FGSM(8 / 255, precision="bfloat16"), str(tmp_path),
                            batch_size=4, verbose=0)


def test_l2_rounding_keeps_the_ball_and_augmented_pairs_labels():
    rng = np.random.RandomState(0)
    clean = rng.randint(0, 256, (5, 4, 4, 3)) / 255.0
    direction = rng.randn(*clean.shape)
    direction /= np.sqrt((direction.reshape(5, -1) ** 2).sum(1))[:, None, None, None]
    adv = np.clip(clean + 0.5 * direction, 0, 1)
    stored = static_set._to_uint8(adv, clean, "l2", 0.5)
    dist = np.sqrt(((stored / 255.0 - clean).reshape(5, -1) ** 2).sum(1))
    assert np.all(dist <= 0.5 + 1e-9) and np.all(dist > 0.3)
    images, labels = static_set.augmented(np.round(clean * 255).astype("uint8"), np.arange(5), stored)
    assert images.shape[0] == 10 and list(labels) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="One adversarial example per image"):
        static_set.augmented(images, labels, stored)


def test_static_recipe_fine_tunes_the_pretrained_model_on_the_doubled_set(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    pretrained_path = str(tmp_path / "clean.keras")
    info = data_lib.info("mnist")
    base = Recipe(name="clean", data=DataConfig(dataset="mnist", batch_size=16), model=ModelConfig(name="wong_cnn"),
                  attack=AttackConfig(name="fgsm", eps=0.1), train=TrainConfig(method="standard", epochs=1,
                                                                                val_n=0),
                  eval=EvalConfig(attacks=("fgsm",), n=16))
    keras.utils.set_random_seed(5)
    experiment.build_classifier(base, info).save(pretrained_path)
    recipe = base.override({"name": "static", "train.method": "static", "train.init_from": pretrained_path})
    model = experiment.build_model(recipe, info, steps_per_epoch=4)
    pretrained, _ = experiment.load_classifier(pretrained_path)
    for a, b in zip(model.classifier.weights, pretrained.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert model.method == "standard"
    run = str(tmp_path / "run")
    result = experiment.train(recipe, run, verbose=0)
    assert int(result.model.optimizer.iterations.numpy()) == 4  # 64 images (32 clean + 32 adversarial) / 16
    assert static_set.load(os.path.join(run, "adversarial_set")).shape == (32, 28, 28, 1)
    assert "stored fgsm example" in result.train_source
    with pytest.raises(ValueError, match="init_from"):
        base.override({"train.method": "static"})
    with pytest.raises(ValueError, match="stadv"):
        base.override({"attack.name": "stadv"})
