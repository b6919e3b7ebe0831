"""Tests for tfrobust.export.saved_model.

TF Serving cannot be installed here, so the export is checked the ways TF
Serving reads it: reloaded in a fresh process, through `saved_model_cli`, and
through `keras.layers.TFSMLayer`.
"""

import datetime
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrobust
from tfrobust.export import saved_model as export_lib

X = np.random.RandomState(0).rand(5, 8, 8, 1).astype("float32")
X8 = np.round(X * 255).astype("uint8")  # what the uint8 and PNG endpoints receive
CLASS_NAMES = ["a", "b", "c"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
RAISES = (TypeError, ValueError, tf.errors.InvalidArgumentError)


def _classifier():
    """A tiny functional CNN whose BatchNorm statistics make training=False matter."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3)(inputs)
    bn = keras.layers.BatchNormalization()
    h = keras.layers.ReLU()(bn(h))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    bn.moving_mean.assign(np.array([0.3, -0.2, 0.1, 0.5], "float32"))
    bn.moving_variance.assign(np.array([2.0, 0.5, 3.0, 1.5], "float32"))
    return model


def _metadata():
    return {
        "recipe": "test", "dataset": "mnist", "threat_model": {"norm": "linf", "eps": 0.3},
        "metrics": {"clean_accuracy": 0.9, "robust_accuracy": {"pgd": 0.8},
                    "attacks": {"pgd": {"steps": 3}}, "n": 10},
    }


def _full_metadata():
    return dict(_metadata(), name="m", version=1, input={})


def _run(args):
    proc = subprocess.run(args, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _listing(model_dir):
    return sorted(os.listdir(model_dir))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    model = _classifier()
    path = export_lib.export_saved_model(model, base, "toy", metadata=_metadata(), class_names=CLASS_NAMES)
    return model, base, path


def test_layout_and_metadata(exported):
    _, base, path = exported
    assert path == os.path.join(base, "toy", "1")
    assert _listing(os.path.join(base, "toy")) == ["1"]  # no temporary directory left
    assert {"saved_model.pb", "variables", export_lib.METADATA_FILE} <= set(os.listdir(path))
    md = export_lib.load_metadata(path)
    assert md["name"] == "toy" and md["version"] == 1
    assert md["recipe"] == "test" and md["metrics"] == _metadata()["metrics"]  # the caller's keys survive
    assert md["input"] == {"shape": [8, 8, 1], "dtype": "float32", "range": [0.0, 1.0]}
    assert md["signatures"] == list(export_lib.SIGNATURES)
    assert md["class_names"] == CLASS_NAMES
    assert md["tfrobust_version"] == tfrobust.__version__
    created = datetime.datetime.fromisoformat(md["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    export_lib.validate_metadata(md)


_RELOAD = r"""
import sys, numpy as np, tensorflow as tf
path, x_path, out_path = sys.argv[1:]
x = np.load(x_path)
x8 = np.round(x * 255).astype("uint8")
sigs = tf.saved_model.load(path).signatures
f = sigs["serving_default"](images=tf.constant(x))
q = sigs["serving_default"](images=tf.constant(x8.astype("float32") / 255))
u = sigs["serve_uint8"](images=tf.constant(x8))
b = sigs["serve_image_bytes"](images=tf.stack([tf.io.encode_png(i) for i in x8]))
out = {}
for prefix, o in (("f", f), ("q", q), ("u", u), ("b", b)):
    for k, v in o.items():
        out[f"{prefix}_{k}"] = v.numpy().astype(str) if v.dtype == tf.string else v.numpy()
out["sigs"] = np.array(sorted(sigs.keys()))
np.savez(out_path, **out)
"""


def test_every_signature_reloaded_in_a_fresh_process_matches_the_model(exported, tmp_path):
    model, _, path = exported
    x_path, out_path = str(tmp_path / "x.npy"), str(tmp_path / "out.npz")
    np.save(x_path, X)
    _run([sys.executable, "-c", _RELOAD, path, x_path, out_path])
    out = np.load(out_path)
    assert sorted(out["sigs"]) == sorted(export_lib.SIGNATURES)

    want = model(X, training=False).numpy()
    quantised = model(X8.astype("float32") / 255, training=False).numpy()
    for prefix, logits in (("f", want), ("q", quantised), ("u", quantised), ("b", quantised)):
        np.testing.assert_allclose(out[f"{prefix}_logits"], logits, atol=1e-5)
        np.testing.assert_allclose(out[f"{prefix}_probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
        assert out[f"{prefix}_classes"].dtype == np.int64
        np.testing.assert_array_equal(out[f"{prefix}_classes"], logits.argmax(-1))
        np.testing.assert_array_equal(out[f"{prefix}_class_names"], np.array(CLASS_NAMES)[logits.argmax(-1)])
    # The uint8 and PNG endpoints equal the float endpoint on x/255.
    for prefix in ("u", "b"):
        np.testing.assert_allclose(out[f"{prefix}_logits"], out["q_logits"], atol=1e-5)
    # Batch statistics give other logits: the export really runs in inference mode.
    train_mode, _ = model.stateless_call(model.trainable_variables, model.non_trainable_variables, X,
                                         training=True)
    assert not np.allclose(want, np.asarray(train_mode), atol=1e-3)


def _saved_model_cli():
    candidate = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_show_and_run(exported, tmp_path):
    model, _, path = exported
    show = _run(_saved_model_cli() + ["show", "--all", "--dir", path])
    listed = set(re.findall(r"signature_def\['(\w+)'\]", show.stdout))
    assert set(export_lib.SIGNATURES) <= listed
    np.save(tmp_path / "x.npy", X)
    _run(_saved_model_cli() + [
        "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")])
    np.testing.assert_allclose(np.load(tmp_path / "out" / "logits.npy"), model(X, training=False).numpy(),
                               atol=1e-5)


def test_tfsm_layer_wraps_the_export(exported):
    model, _, path = exported
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    np.testing.assert_allclose(layer(X)["logits"].numpy(), model(X, training=False).numpy(), atol=1e-5)


def test_each_weight_is_stored_once(exported):
    # keras-team/keras#23553: ExportArchive alone writes every weight twice.
    model, _, path = exported
    stored = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    assert sum(int(np.prod(shape)) for name, shape in stored if shape) == model.count_params()
    names = {v.name.split(":")[0] for v in tf.saved_model.load(path).variables}
    assert names == {v.path for v in model.variables}


def test_versions_increase_and_are_never_overwritten(tmp_path, monkeypatch):
    model = _classifier()
    base = str(tmp_path)
    assert export_lib.latest_version(base, "m") is None
    assert export_lib.export_saved_model(model, base, "m") == os.path.join(base, "m", "1")
    assert export_lib.export_saved_model(model, base, "m") == os.path.join(base, "m", "2")
    assert export_lib.latest_version(base, "m") == 2
    before = os.path.getmtime(os.path.join(base, "m", "1", export_lib.METADATA_FILE))
    with monkeypatch.context() as m:  # the conflict is found before anything is built or written
        m.setattr(export_lib, "_build_archive", _raise)
        with pytest.raises(FileExistsError, match="Version 1"):
            export_lib.export_saved_model(model, base, "m", version=1)
    assert _listing(os.path.join(base, "m")) == ["1", "2"]
    assert os.path.getmtime(os.path.join(base, "m", "1", export_lib.METADATA_FILE)) == before
    assert export_lib.export_saved_model(model, base, "m", version=10).endswith(os.path.join("m", "10"))
    os.makedirs(os.path.join(base, "m", "not_a_version"))
    assert export_lib.export_saved_model(model, base, "m") == os.path.join(base, "m", "11")
    assert export_lib.load_metadata(os.path.join(base, "m", "11"))["version"] == 11
    assert _listing(os.path.join(base, "m")) == ["1", "10", "11", "2", "not_a_version"]


class _Interrupt(Exception):
    pass


def _raise(*args, **kwargs):
    raise _Interrupt("disk full")


@pytest.mark.parametrize("step", ["write_out", "metadata", "rename"])
def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch, step):
    if step == "write_out":  # the SavedModel is (partly) on disk when the writer fails
        build = export_lib._build_archive

        def failing_build(*args):
            archive = build(*args)
            write_out = archive.write_out

            def write_then_fail(path, **kwargs):
                write_out(path, **kwargs)
                assert os.path.exists(os.path.join(path, "saved_model.pb"))
                _raise()

            archive.write_out = write_then_fail
            return archive

        monkeypatch.setattr(export_lib, "_build_archive", failing_build)
    elif step == "metadata":  # after the SavedModel, before metadata.json
        monkeypatch.setattr(export_lib, "_write_metadata", _raise)
    else:  # everything written, then the rename fails
        monkeypatch.setattr(export_lib.os, "rename", _raise)
    with pytest.raises(_Interrupt, match="disk full"):
        export_lib.export_saved_model(_classifier(), str(tmp_path), "m", metadata=_metadata())
    assert _listing(tmp_path / "m") == []
    assert export_lib.latest_version(str(tmp_path), "m") is None


def test_bad_metadata_fails_before_anything_is_written(tmp_path):
    md = _metadata()
    md["metrics"]["clean_accuracy"] = 90.0  # a percentage, not a fraction
    with pytest.raises(ValueError, match="clean_accuracy"):
        export_lib.export_saved_model(_classifier(), str(tmp_path), "m", metadata=md)
    assert not os.path.exists(tmp_path / "m")


def test_numpy_metadata_values_are_converted(tmp_path):
    md = _metadata()
    md["metrics"]["clean_accuracy"] = np.float32(0.5)
    md["metrics"]["n"] = np.int64(10)
    path = export_lib.export_saved_model(_classifier(), str(tmp_path), "m", metadata=md)
    metrics = export_lib.load_metadata(path)["metrics"]
    assert metrics["clean_accuracy"] == 0.5 and metrics["n"] == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "../escape"}, "name="),
        ({"name": ".tmp-x"}, "name="),
        ({"version": 0}, "version="),
        ({"version": "2"}, "version="),
        ({"class_names": ["a", "b"]}, "class_names="),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, match):
    kwargs = dict({"name": "m"}, **kwargs)
    with pytest.raises(ValueError, match=match):
        export_lib.export_saved_model(_classifier(), str(tmp_path), **kwargs)
    assert os.listdir(tmp_path) == []


def test_dynamic_input_shape_is_rejected(tmp_path):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ValueError, match="input_shape"):
        export_lib.export_saved_model(model, str(tmp_path), "m")


def test_wrong_inputs_raise_instead_of_returning(exported):
    _, _, path = exported
    sigs = tf.saved_model.load(path).signatures
    with pytest.raises(RAISES):
        sigs["serving_default"](images=tf.zeros([2, 8, 8, 1], tf.uint8))
    with pytest.raises(RAISES):
        sigs["serving_default"](images=tf.zeros([2, 9, 8, 1], tf.float32))
    with pytest.raises(RAISES):
        sigs["serving_default"](images=tf.zeros([8, 8, 1], tf.float32))
    with pytest.raises(RAISES):
        sigs["serve_uint8"](images=tf.zeros([2, 8, 8, 1], tf.float32))
    wrong_size = tf.io.encode_png(tf.zeros([9, 8, 1], tf.uint8))
    with pytest.raises(RAISES):
        sigs["serve_image_bytes"](images=tf.stack([wrong_size]))
    with pytest.raises(RAISES):
        sigs["serve_image_bytes"](images=tf.constant([b"not an image"]))
    # The right input still works on the same loaded model.
    assert sigs["serving_default"](images=tf.constant(X))["logits"].shape == (5, 3)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda md: md.pop("dataset"), "dataset"),
        (lambda md: md.pop("metrics"), "metrics"),
        (lambda md: md.pop("threat_model"), "threat_model"),
        (lambda md: md.__setitem__("version", 0), "version=0"),
        (lambda md: md["metrics"].__setitem__("clean_accuracy", 1.5), "clean_accuracy=1.5"),
        (lambda md: md["metrics"].__setitem__("clean_accuracy", 1), "clean_accuracy=1"),
        (lambda md: md["metrics"]["robust_accuracy"].__setitem__("pgd", -0.1), "robust_accuracy.pgd"),
        (lambda md: md["metrics"].__setitem__("robust_accuracy", {}), "robust_accuracy"),
        (lambda md: md["metrics"]["attacks"].pop("pgd"), "metrics.attacks.pgd"),
        (lambda md: md["threat_model"].__setitem__("norm", "l1"), "threat_model.norm"),
        (lambda md: md["threat_model"].__setitem__("eps", 0.0), "threat_model.eps"),
        (lambda md: md["threat_model"].__setitem__("eps", 8), "threat_model.eps"),
        (lambda md: md["metrics"].__setitem__("n", 0), "metrics.n"),
        (lambda md: md["metrics"].__setitem__("n", True), "metrics.n"),
        (lambda md: md.__setitem__("metrics", [0.9]), "metrics"),
    ],
)
def test_validate_metadata_rejects_bad_values(change, match):
    md = _full_metadata()
    export_lib.validate_metadata(md)
    change(md)
    with pytest.raises(ValueError, match=match):
        export_lib.validate_metadata(md)


def test_models_config_lists_servable_models(tmp_path):
    base = str(tmp_path)
    for name in ("b_model", "a_model"):
        export_lib.export_saved_model(_classifier(), base, name)
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_tmp" / ".tmp-abc").mkdir(parents=True)
    path = export_lib.write_models_config(base)
    assert path == os.path.join(base, "models.config")
    text = open(path).read()
    configs = re.findall(r'config \{\s*name: "([^"]+)"\s*base_path: "([^"]+)"\s*'
                         r'model_platform: "tensorflow"\s*\}', text)
    assert configs == [("a_model", "/models/a_model"), ("b_model", "/models/b_model")]
    assert text.startswith("model_config_list {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}") == 3
    assert sorted(os.listdir(base)) == ["a_model", "b_model", "empty", "models.config", "only_tmp"]


@pytest.mark.parametrize("branch", ["clean", "adv"])
def test_mixbn_model_exports_its_chosen_branch(tmp_path, branch):
    from tfrobust.models import mixbn

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3)(inputs)
    layer = mixbn.MixBatchNormalization(name="mix")
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(layer(h)))
    model = keras.Model(inputs, outputs)
    layer.clean.moving_mean.assign(np.full((4,), 0.4, "float32"))
    layer.adv.moving_variance.assign(np.full((4,), 3.0, "float32"))
    mixbn.set_branch(model, branch)
    path = export_lib.export_saved_model(model, str(tmp_path), "mix", metadata=_metadata())
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(X))["logits"].numpy()
    other = "adv" if branch == "clean" else "clean"
    with mixbn.route(model, branch):
        expected = model(X, training=False).numpy()
    with mixbn.route(model, other):
        not_expected = model(X, training=False).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert not np.allclose(served, not_expected, atol=1e-3)
    assert export_lib.load_metadata(path)["bn_branch"] == branch


_KILLED_EXPORT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from tests.export.test_saved_model import _classifier, _metadata
from tfrobust.export import saved_model as export_lib

def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # after the SavedModel is on disk, before metadata.json

export_lib._write_metadata = killed
export_lib.export_saved_model(_classifier(), sys.argv[1], "m", metadata=_metadata())
"""


def test_a_killed_export_leaves_no_version_and_the_next_export_cleans_up(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "export.py"
    script.write_text(_KILLED_EXPORT.format(repo=repo))
    base = tmp_path / "saved_models"
    proc = subprocess.run([sys.executable, str(script), str(base)], capture_output=True, text=True, cwd=repo,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == -9, proc.stderr[-2000:]
    left = os.listdir(base / "m")
    assert len(left) == 1 and left[0].startswith(".tmp-")
    assert export_lib.latest_version(str(base), "m") is None
    # A live export's temporary (this process) and names the exporter did not make are left alone.
    live = base / "m" / f".tmp-{os.getpid()}-writing"
    live.mkdir()
    (base / "m" / ".tmp-notes").mkdir()
    path = export_lib.export_saved_model(_classifier(), str(base), "m", metadata=_metadata())
    assert path.endswith(os.path.join("m", "1"))
    assert sorted(os.listdir(base / "m")) == sorted(["1", live.name, ".tmp-notes"])
