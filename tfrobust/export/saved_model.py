"""SavedModel export in TF Serving's layout, with metadata.json, written atomically.

Layout: `base_dir/<name>/<integer version>/` holding `saved_model.pb`,
`variables/` and `metadata.json`. Signatures:

- `serving_default`: float32 `[None, H, W, C]` in [0, 1] named `images`;
- `serve_uint8`: uint8 `[None, H, W, C]`, divided by 255 inside the endpoint
  (Keras' own uint8 input signature casts without scaling);
- `serve_image_bytes`: a `[None]` string tensor of encoded PNG/JPEG images,
  the form TF Serving's REST API accepts as `{"b64": ...}`.

Each returns `logits`, `probabilities` and `classes` (and `class_names` when
the dataset has them), running the model with `training=False`.

Serve with:

    tensorflow_model_server --rest_api_port=8501 \\
        --model_name=mnist_pgd_linf --model_base_path=$PWD/saved_models/mnist_pgd_linf
"""

import datetime
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

SIGNATURES = ("serving_default", "serve_uint8", "serve_image_bytes")
METADATA_FILE = "metadata.json"


def _versions(model_dir):
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit() and os.path.isdir(os.path.join(model_dir, d)))


def latest_version(base_dir, name):
    """The largest integer version under `base_dir/name`, or None."""
    versions = _versions(os.path.join(base_dir, name))
    return versions[-1] if versions else None


def validate_metadata(md):
    """Checks metadata against the schema that users and checks rely on.

    Raises:
        ValueError: naming the first bad or missing key.
    """
    def fail(key, expected, value):
        raise ValueError(f"metadata {key} must be {expected}. Received: {key}={value!r}")

    for key in ("name", "version", "recipe", "dataset", "input", "threat_model", "metrics"):
        if key not in md:
            fail(key, "present", None)
    tm = md["threat_model"]
    if not isinstance(tm, dict) or tm.get("norm") not in ("linf", "l2"):
        fail("threat_model.norm", "'linf' or 'l2'", tm.get("norm") if isinstance(tm, dict) else tm)
    if not isinstance(tm.get("eps"), float) or not tm["eps"] > 0:
        fail("threat_model.eps", "a float > 0", tm.get("eps"))
    m = md["metrics"]
    acc = m.get("clean_accuracy")
    if not isinstance(acc, float) or not 0 <= acc <= 1:
        fail("metrics.clean_accuracy", "a float in [0, 1]", acc)
    robust = m.get("robust_accuracy")
    if not isinstance(robust, dict) or not robust:
        fail("metrics.robust_accuracy", "a non-empty {attack: accuracy} dict", robust)
    for attack, value in robust.items():
        if not isinstance(value, float) or not 0 <= value <= 1:
            fail(f"metrics.robust_accuracy.{attack}", "a float in [0, 1]", value)
    attacks = m.get("attacks")
    if not isinstance(attacks, dict) or any(not isinstance(v, dict) for v in attacks.values()):
        fail("metrics.attacks", "an {attack: parameters} dict", attacks)
    n = m.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        fail("metrics.n", "an int > 0", n)


def _build_archive(classifier, class_names):
    h, w, c = classifier.input_shape[1:]
    names = tf.constant(list(class_names)) if class_names else None

    def outputs(images):
        logits = tf.cast(classifier(images, training=False), tf.float32)
        classes = tf.argmax(logits, axis=-1)
        out = {"logits": logits, "probabilities": tf.nn.softmax(logits), "classes": classes}
        if names is not None:
            out["class_names"] = tf.gather(names, classes)
        return out

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=c, expand_animations=False)
        return tf.ensure_shape(image, [h, w, c])

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        "serving_default",
        lambda images: outputs(images),
        input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")],
    )
    archive.add_endpoint(
        "serve_uint8",
        lambda images: outputs(tf.cast(images, tf.float32) / 255.0),
        input_signature=[tf.TensorSpec([None, h, w, c], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serve_image_bytes",
        lambda images: outputs(
            tf.cast(tf.map_fn(decode, images, fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8)),
                    tf.float32) / 255.0
        ),
        input_signature=[tf.TensorSpec([None], tf.string, name="images")],
    )
    return archive


def export_saved_model(classifier, base_dir, name, *, metadata=None, class_names=None, version=None,
                       verbose=False):
    """Exports a classifier as a servable SavedModel version with metadata.json.

    The export is written into a temporary directory beside the versions
    (TF Serving ignores names that are not integers) and renamed into place,
    so an interrupted export never leaves a partial version.

    Args:
        classifier: a built `keras.Model` from float32 NHWC [0, 1] to logits.
        base_dir: e.g. "saved_models".
        name: the model's name, e.g. "mnist_pgd_linf".
        metadata: a dict stored in metadata.json; if it has "metrics", the
            whole file is validated with `validate_metadata` first.
        class_names: optional names, one per class, returned per prediction.
        version: an integer version; None takes the next one. An existing
            version is never overwritten.
        verbose: let Keras print the exported variables.

    Returns:
        The path of the version directory.

    Raises:
        FileExistsError: `version` exists already.
        ValueError: the metadata does not follow the schema.
    """
    model_dir = os.path.join(base_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    if version is None:
        version = (latest_version(base_dir, name) or 0) + 1
    version = int(version)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version {version} of {name!r} exists at {final}; versions are never overwritten.")
    h, w, c = classifier.input_shape[1:]
    md = dict(metadata or {})
    md.update({
        "name": name,
        "version": version,
        "input": {"shape": [h, w, c], "dtype": "float32", "range": [0.0, 1.0]},
        "signatures": list(SIGNATURES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    if class_names:
        md["class_names"] = list(class_names)
    if "metrics" in md:
        validate_metadata(md)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=model_dir)
    try:
        export_dir = os.path.join(tmp, "export")
        _build_archive(classifier, class_names).write_out(export_dir, verbose=verbose)
        with open(os.path.join(export_dir, METADATA_FILE), "w") as f:
            json.dump(md, f, indent=2)
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_metadata(version_dir):
    """Reads the metadata.json of an exported version."""
    with open(os.path.join(version_dir, METADATA_FILE)) as f:
        return json.load(f)


def write_models_config(base_dir):
    """Writes `base_dir/models.config` for TF Serving's `--model_config_file`.

    Lists every model directory with at least one integer version. Paths are
    `/models/<name>`, the layout of the tensorflow/serving Docker image:

        docker run -p 8501:8501 -v $PWD/saved_models:/models tensorflow/serving \\
            --model_config_file=/models/models.config

    Returns:
        The path of the written file.
    """
    entries = []
    for name in sorted(os.listdir(base_dir)):
        if os.path.isdir(os.path.join(base_dir, name)) and _versions(os.path.join(base_dir, name)):
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "/models/{name}"\n'
                '    model_platform: "tensorflow"\n'
                "  }\n"
            )
    path = os.path.join(base_dir, "models.config")
    with open(path, "w") as f:
        f.write("model_config_list {\n" + "".join(entries) + "}\n")
    return path
