import json

import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust import config
from tfrobust import data as data_lib
from tfrobust import landscape
from tfrobust.experiment import studies


def _classifier(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 5, strides=4),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


def test_landscape_study_interpolates_between_two_models(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(8, 24))
    a, b = _classifier(0), _classifier(1)
    recipe = config.Recipe(name="t").override({"data.dataset": "mnist"})
    test = data_lib.load("mnist", "test")
    study = studies.landscape_study(a, recipe, str(tmp_path / "ls"), n=24, points=3, span=(0.0, 1.0), other=b,
                                    sharpness_n=8, record={"model": "a"})
    # The line from a to b: coordinate 0 is model a, 1 is model b (their own losses on the same images).
    losses = [landscape.model_loss_fn(m, test.images, test.labels)().numpy() for m in (a, b)]
    np.testing.assert_allclose(study["grid"]["loss"][[0, 2]], losses, rtol=1e-4)
    assert study["centre_loss"] == pytest.approx(float(study["grid"]["loss"][1]))
    saved = json.load(open(study["files"][2]))
    assert saved["model"] == "a" and saved["grid"]["shape"] == [3]
    assert saved["top_hessian_eigenvalue"] == study["sharpness"]["top_hessian_eigenvalue"]
    assert "| loss at the model |" in studies.format_landscape_study(study, 0.1)
    # The perturbed weights are put back.
    np.testing.assert_allclose(landscape.model_loss_fn(a, test.images, test.labels)().numpy(), losses[0], rtol=1e-6)


def test_landscape_study_refuses_an_export(tmp_path):
    recipe = config.Recipe(name="t").override({"data.dataset": "mnist"})
    with pytest.raises(ValueError, match="not an export"):
        studies.landscape_study(object(), recipe, str(tmp_path))
    assert not (tmp_path / "grid.npz").exists()


def test_generated_data_study_in_a_models_feature_space(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(60, 30))
    path = str(tmp_path / "m.keras")
    _classifier(0).save(path)
    blank = str(tmp_path / "blank.npz")
    np.savez(blank, image=np.zeros((20, 28, 28, 1), "uint8"))
    pixels = studies.generated_data_study("mnist", generated={"blank": blank}, n=20, k=3, include=["gaussian"])
    features = studies.generated_data_study("mnist", generated={"blank": blank}, features=path, n=20, k=3,
                                            include=["gaussian"])
    assert [r.name for r in pixels["rows"]] == ["gaussian", "blank"]
    assert pixels["features"] == "pixels" and features["features"] == f"penultimate layer of {path}"
    # The same points measured in another space give other distances.
    assert pixels["rows"][0].distance_ratio_train != features["rows"][0].distance_ratio_train
    record = json.loads(json.dumps(studies.generated_data_record(features)))
    assert record["rows"][1]["name"] == "blank" and record["rows"][1]["complementarity_self"] == 1.0
