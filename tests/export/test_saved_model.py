import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.export import saved_model as export_lib

X = np.random.RandomState(0).rand(5, 8, 8, 1).astype("float32")


def _classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3),
    ])
    bn = model.layers[1]
    # Non-trivial moving statistics, so that running with training=True would show.
    bn.moving_mean.assign(np.full(4, 0.3, "float32"))
    bn.moving_variance.assign(np.full(4, 2.0, "float32"))
    return model


def _metadata():
    return {
        "recipe": "test", "dataset": "mnist", "threat_model": {"norm": "linf", "eps": 0.3},
        "metrics": {"clean_accuracy": 0.9, "robust_accuracy": {"pgd": 0.8},
                    "attacks": {"pgd": {"steps": 3}}, "n": 10},
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    model = _classifier()
    path = export_lib.export_saved_model(model, base, "toy", metadata=_metadata(), class_names=["a", "b", "c"])
    return model, base, path


def test_layout_and_metadata(exported):
    _, base, path = exported
    assert path == os.path.join(base, "toy", "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    md = export_lib.load_metadata(path)
    assert md["name"] == "toy" and md["version"] == 1
    assert md["input"] == {"shape": [8, 8, 1], "dtype": "float32", "range": [0.0, 1.0]}
    assert md["signatures"] == list(export_lib.SIGNATURES)
    assert not [d for d in os.listdir(os.path.join(base, "toy")) if d.startswith(".tmp")]


_RELOAD = r"""
import sys, numpy as np, tensorflow as tf
path, x_path, out_path = sys.argv[1:]
x = np.load(x_path)
m = tf.saved_model.load(path)
f = m.signatures["serving_default"](images=tf.constant(x))
u = m.signatures["serve_uint8"](images=tf.constant(np.round(x * 255).astype("uint8")))
pngs = tf.stack([tf.io.encode_png(tf.constant(np.round(i * 255).astype("uint8"))) for i in x])
b = m.signatures["serve_image_bytes"](images=pngs)
np.savez(out_path, logits=f["logits"], probabilities=f["probabilities"], classes=f["classes"],
         names=f["class_names"].numpy().astype(str), u_logits=u["logits"], b_logits=b["logits"])
"""


def test_fresh_process_reload_matches_in_memory_model(exported, tmp_path):
    model, _, path = exported
    x_path, out_path = str(tmp_path / "x.npy"), str(tmp_path / "out.npz")
    np.save(x_path, X)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _RELOAD, path, x_path, out_path], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(out_path)
    want = model(X, training=False).numpy()
    np.testing.assert_allclose(out["logits"], want, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(want).numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))
    np.testing.assert_array_equal(out["names"], np.array(["a", "b", "c"])[want.argmax(-1)])
    # uint8 and PNG endpoints see the same pixels, quantised to 8 bits.
    quantised = model(np.round(X * 255).astype("float32") / 255, training=False).numpy()
    np.testing.assert_allclose(out["u_logits"], quantised, atol=1e-5)
    np.testing.assert_allclose(out["b_logits"], quantised, atol=1e-5)
    # Batch statistics would give other logits: the export really is in inference mode.
    train_mode, _ = model.stateless_call(model.trainable_variables, model.non_trainable_variables, X,
                                         training=True)
    assert not np.allclose(want, np.asarray(train_mode), atol=1e-3)


def _saved_model_cli():
    candidate = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(candidate):
        return [candidate]
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_show_and_run(exported, tmp_path):
    _, _, path = exported
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    show = subprocess.run(_saved_model_cli() + ["show", "--all", "--dir", path], capture_output=True,
                          text=True, env=env)
    assert show.returncode == 0, show.stderr[-2000:]
    for sig in export_lib.SIGNATURES:
        assert f"signature_def['{sig}']" in show.stdout
    np.save(tmp_path / "x.npy", X)
    run = subprocess.run(_saved_model_cli() + [
        "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={tmp_path / 'x.npy'}"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "logits" in run.stdout


def test_tfsm_layer_wraps_the_export(exported):
    model, _, path = exported
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    np.testing.assert_allclose(layer(X)["logits"].numpy(), model(X, training=False).numpy(), atol=1e-5)


def test_versions_increase_and_are_never_overwritten(tmp_path):
    model = _classifier()
    base = str(tmp_path)
    assert export_lib.export_saved_model(model, base, "m").endswith(os.path.join("m", "1"))
    assert export_lib.export_saved_model(model, base, "m").endswith(os.path.join("m", "2"))
    assert export_lib.latest_version(base, "m") == 2
    with pytest.raises(FileExistsError):
        export_lib.export_saved_model(model, base, "m", version=1)


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    # Fails after the SavedModel is written, before metadata.json and the rename.
    monkeypatch.setattr(export_lib.json, "dump", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export_saved_model(_classifier(), str(tmp_path), "m")
    assert os.listdir(tmp_path / "m") == []


def test_wrong_inputs_raise_instead_of_returning(exported):
    _, _, path = exported
    sig = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        sig(images=tf.zeros([2, 8, 8, 1], tf.uint8))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        sig(images=tf.zeros([2, 9, 8, 1], tf.float32))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda md: md.pop("dataset"), "dataset"),
        (lambda md: md["metrics"].__setitem__("clean_accuracy", 1.5), "clean_accuracy=1.5"),
        (lambda md: md["metrics"]["robust_accuracy"].__setitem__("pgd", -0.1), "robust_accuracy.pgd"),
        (lambda md: md["threat_model"].__setitem__("norm", "l1"), "threat_model.norm"),
        (lambda md: md["metrics"].__setitem__("n", 0), "metrics.n"),
    ],
)
def test_validate_metadata_rejects_bad_values(change, match):
    md = dict(_metadata(), name="m", version=1, input={})
    md["metrics"] = json.loads(json.dumps(md["metrics"]))
    md["threat_model"] = dict(md["threat_model"])
    export_lib.validate_metadata(md)
    change(md)
    with pytest.raises(ValueError, match=match):
        export_lib.validate_metadata(md)


def test_models_config_lists_servable_models(tmp_path):
    export_lib.export_saved_model(_classifier(), str(tmp_path), "a")
    (tmp_path / "empty").mkdir()
    text = open(export_lib.write_models_config(str(tmp_path))).read()
    assert 'name: "a"' in text and 'base_path: "/models/a"' in text and "empty" not in text
