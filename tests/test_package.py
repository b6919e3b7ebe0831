"""`import tfrobust` alone registers every Keras-serialisable class, so saved models load after it."""

import json
import os
import subprocess
import sys

import keras
import numpy as np

import tfrobust  # noqa: F401 (the classes below are registered by it)
from tfrobust import models
from tfrobust.models.bottleneck_resnet import Bottleneck
from tfrobust.models.mixbn import MixBatchNormalization
from tfrobust.training import AdversarialModel, optimizers
from tfrobust.training.schedules import PiecewiseLinear

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a fresh interpreter: the registered tfrobust classes after `import tfrobust`, after importing every
# tfrobust module, and the Keras-serialisable kinds of class that tfrobust defines.
SURVEY = """
import importlib, inspect, json, pkgutil
import keras, tfrobust

def registered():
    return sorted(k for k, v in keras.saving.get_custom_objects().items()
                  if getattr(v, "__module__", "").startswith("tfrobust"))

on_import = registered()
KINDS = (keras.layers.Layer, keras.optimizers.Optimizer, keras.optimizers.schedules.LearningRateSchedule,
         keras.losses.Loss, keras.metrics.Metric, keras.constraints.Constraint, keras.initializers.Initializer,
         keras.regularizers.Regularizer)
defined = set()
for info in pkgutil.walk_packages(tfrobust.__path__, "tfrobust."):
    if info.name.endswith("__main__"):
        continue
    try:
        module = importlib.import_module(info.name)
    except ImportError:  # an optional dependency (e.g. tensorflow-serving-api)
        continue
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__.startswith("tfrobust") and issubclass(cls, KINDS):
            defined.add(keras.saving.get_registered_name(cls))
print(json.dumps({"on_import": on_import, "all": registered(), "defined": sorted(defined)}))
"""

LOAD = """
import sys
import numpy as np
import tfrobust
import keras

model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model.classifier(x, training=False)))
print(type(model).__name__, type(model.optimizer).__module__, model.optimizer.get_config()["learning_rate"]["class_name"])
"""


def _python(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_import_tfrobust_registers_every_serialisable_class():
    survey = json.loads(_python(SURVEY))
    assert survey["on_import"] == survey["all"]
    assert set(survey["defined"]) <= set(survey["on_import"])  # no custom layer, optimizer, ... unregistered
    assert "tfrobust>PiecewiseLinear" in survey["on_import"]


def _classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = models.Normalize(mean=0.5, std=0.25)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = MixBatchNormalization(branch="adv")(x)
    x = Bottleneck(2, strides=1, project=True)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_a_saved_model_loads_in_a_fresh_process_after_import_tfrobust_alone(tmp_path):
    model = AdversarialModel(_classifier(), method="standard")
    schedule = PiecewiseLinear([0, 2, 4], [0.0, 0.1, 0.0])
    model.compile(optimizer=optimizers.SGD(learning_rate=schedule, momentum=0.9))
    x = np.random.RandomState(0).uniform(0, 1, (4, 8, 8, 1)).astype("float32")
    model.fit(x, np.array([0, 1, 2, 0]), batch_size=4, epochs=1, verbose=0)
    path, x_path, out_path = (str(tmp_path / name) for name in ("model.keras", "x.npy", "out.npy"))
    model.save(path)
    np.save(x_path, x)
    line = _python(LOAD, path, x_path, out_path)
    assert line == "AdversarialModel tfrobust.training.optimizers PiecewiseLinear"
    expected = keras.ops.convert_to_numpy(model.classifier(x, training=False))
    np.testing.assert_allclose(np.load(out_path), expected, rtol=1e-5, atol=1e-6)
