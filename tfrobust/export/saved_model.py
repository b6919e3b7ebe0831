"""SavedModel export in TF Serving's layout, with metadata.json, written atomically.

Layout: `base_dir/<name>/<integer version>/` holding `saved_model.pb`,
`variables/` and `metadata.json`. TF Serving loads the largest integer
version and ignores every other name, so the `.tmp-*` directories that an
export writes into are never served. Signatures:

- `serving_default`: float32 `[None, H, W, C]` in [0, 1] named `images`;
- `serve_uint8`: uint8 `[None, H, W, C]`, divided by 255 inside the endpoint
  (Keras' own uint8 input signature casts without scaling);
- `serve_image_bytes`: a `[None]` string tensor of encoded PNG/JPEG images,
  the form TF Serving's REST API accepts as `{"b64": ...}`. Each image must
  already be H x W; a different size raises instead of being resized.

Each returns `logits` (float32), `probabilities` (softmax of the logits) and
`classes` (int64 argmax), plus `class_names` (string) when class names were
given, running the model with `training=False`.

Serve with:

    tensorflow_model_server --rest_api_port=8501 \\
        --model_name=mnist_pgd_linf --model_base_path=$PWD/saved_models/mnist_pgd_linf
"""

import datetime
import errno
import json
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfrobust import version as version_lib
from tfrobust.models import mixbn

SIGNATURES = ("serving_default", "serve_uint8", "serve_image_bytes")
METADATA_FILE = "metadata.json"
MODELS_CONFIG_FILE = "models.config"
TMP_PREFIX = ".tmp-"

_VERSION_RE = re.compile(r"[0-9]+")
# Safe as a directory, a text-proto string and a REST path segment (/v1/models/<name>).
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _versions(model_dir):
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(d) for d in os.listdir(model_dir)
        if _VERSION_RE.fullmatch(d) and os.path.isdir(os.path.join(model_dir, d))
    )


def latest_version(base_dir, name):
    """The largest integer version under `base_dir/name`.

    Args:
        base_dir: str, the directory that holds one directory per model.
        name: str, the model's name.

    Returns:
        int, or None when the model has no version (or no directory).
    """
    versions = _versions(os.path.join(base_dir, name))
    return versions[-1] if versions else None


def _is_float(value):
    return isinstance(value, float) and math.isfinite(value)


def _is_unit(value):
    return _is_float(value) and 0.0 <= value <= 1.0


def validate_metadata(md):
    """Checks metadata against the schema that users and checks rely on.

    Required: `name` (str), `version` (int > 0), `recipe` (str), `dataset`
    (str), `input` (dict), `threat_model` {`norm`: "linf" | "l2", `eps`:
    float > 0}, `metrics` {`clean_accuracy`: float in [0, 1],
    `robust_accuracy`: {attack: float in [0, 1]} (non-empty), `attacks`:
    {attack: params dict} with an entry for every robust accuracy, `n`:
    int > 0}. Other keys are allowed and kept.

    Args:
        md: dict, the metadata.

    Raises:
        ValueError: naming the first bad or missing key.
    """
    def fail(key, expected, value):
        raise ValueError(f"metadata {key} must be {expected}. Received: {key}={value!r}")

    if not isinstance(md, dict):
        fail("metadata", "a dict", md)
    for key in ("name", "version", "recipe", "dataset", "input", "threat_model", "metrics"):
        if key not in md:
            fail(key, "present", None)
    for key in ("name", "recipe", "dataset"):
        if not isinstance(md[key], str) or not md[key]:
            fail(key, "a non-empty string", md[key])
    version = md["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version <= 0:
        fail("version", "an int > 0", version)
    if not isinstance(md["input"], dict):
        fail("input", "a dict", md["input"])

    tm = md["threat_model"]
    if not isinstance(tm, dict):
        fail("threat_model", "a dict", tm)
    if tm.get("norm") not in ("linf", "l2"):
        fail("threat_model.norm", "'linf' or 'l2'", tm.get("norm"))
    if not _is_float(tm.get("eps")) or not tm["eps"] > 0:
        fail("threat_model.eps", "a float > 0", tm.get("eps"))

    m = md["metrics"]
    if not isinstance(m, dict):
        fail("metrics", "a dict", m)
    if not _is_unit(m.get("clean_accuracy")):
        fail("metrics.clean_accuracy", "a float in [0, 1]", m.get("clean_accuracy"))
    robust = m.get("robust_accuracy")
    if not isinstance(robust, dict) or not robust:
        fail("metrics.robust_accuracy", "a non-empty {attack: accuracy} dict", robust)
    for attack, value in robust.items():
        if not _is_unit(value):
            fail(f"metrics.robust_accuracy.{attack}", "a float in [0, 1]", value)
    attacks = m.get("attacks")
    if not isinstance(attacks, dict):
        fail("metrics.attacks", "an {attack: parameters} dict", attacks)
    for attack in robust:
        if not isinstance(attacks.get(attack), dict):
            fail(f"metrics.attacks.{attack}", "a dict of the attack's parameters", attacks.get(attack))
    n = m.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        fail("metrics.n", "an int > 0", n)


def _input_shape(classifier):
    shape = getattr(classifier, "input_shape", None)
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or any(not isinstance(d, int) for d in shape[1:])):
        raise ValueError(
            "classifier must be a built keras.Model with one static NHWC input. "
            f"Received: classifier.input_shape={shape!r}"
        )
    return tuple(int(d) for d in shape[1:])


def _build_archive(classifier, class_names):
    h, w, c = _input_shape(classifier)
    names = tf.constant(list(class_names)) if class_names else None

    def outputs(images):
        logits = tf.cast(classifier(images, training=False), tf.float32)
        classes = tf.argmax(logits, axis=-1, output_type=tf.int64)
        out = {"logits": logits, "probabilities": tf.nn.softmax(logits), "classes": classes}
        if names is not None:
            out["class_names"] = tf.gather(names, classes)
        return out

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=c, expand_animations=False)
        # Raises InvalidArgumentError for another size: serving never resizes silently.
        return tf.ensure_shape(image, [h, w, c])

    def checked(images):
        # A loaded SavedModel does not check the declared input shape when
        # called, and TF Serving feeds tensors as they come: a rank-3 input
        # aborted the whole process inside oneDNN's convolution (measured,
        # TF 2.21). So the signatures declare an unknown shape and check the
        # full shape here, where Grappler cannot fold the check away.
        return tf.ensure_shape(images, [None, h, w, c])

    def in_unit_range(images):
        # NaN fails both comparisons, so this also rejects NaN: a served robust model answers only
        # for inputs inside the pixel contract it was evaluated on.
        ok = tf.reduce_all(tf.logical_and(images >= 0.0, images <= 1.0))
        with tf.control_dependencies([tf.debugging.Assert(ok, ["images must be float32 in [0, 1], without NaN"])]):
            return tf.identity(images)

    def serve_float(images):
        return outputs(in_unit_range(checked(images)))

    def serve_uint8(images):
        return outputs(tf.cast(checked(images), tf.float32) / 255.0)

    def serve_image_bytes(images):
        pixels = tf.map_fn(decode, images, fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8))
        return outputs(tf.cast(pixels, tf.float32) / 255.0)

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    _track_variables_once(archive)
    archive.add_endpoint("serving_default", serve_float,
                         input_signature=[tf.TensorSpec(None, tf.float32, name="images")])
    archive.add_endpoint("serve_uint8", serve_uint8,
                         input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    archive.add_endpoint("serve_image_bytes", serve_image_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    return archive


def _track_variables_once(archive):
    """Makes the archive track the `tf.Variable`s its endpoints capture, so that each is saved once.

    `ExportArchive.track` keeps the `keras.Variable` wrappers, the traced endpoints capture the
    `tf.Variable`s inside them, and the checkpoint de-duplicates by object: every weight would be
    written twice and restored twice (twice the size on disk and in TF Serving's memory;
    keras-team/keras#23553, open in Keras 3.15).
    """
    tracked = archive._tf_trackable
    for attr in ("variables", "trainable_variables", "non_trainable_variables"):
        inner = [getattr(v, "value", v) for v in getattr(tracked, attr)]
        if all(isinstance(v, tf.Variable) for v in inner):
            setattr(tracked, attr, inner)


def _jsonable(value):
    """`json.dumps` default: NumPy scalars and arrays as Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"metadata values must be JSON-serialisable. Received: {value!r} ({type(value).__name__})")


def _write_metadata(md, directory):
    with open(os.path.join(directory, METADATA_FILE), "w") as f:
        json.dump(md, f, indent=2, allow_nan=False)
        f.write("\n")


def _check_export_arguments(classifier, name, version, class_names):
    """`export_saved_model`'s arguments checked: (H, W, C, class names as str or None)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            "name must be letters, digits, '_', '.' or '-', not starting with '.' or '-'. "
            f"Received: name={name!r}"
        )
    if version is not None and (not isinstance(version, (int, np.integer)) or isinstance(version, bool)
                                or version <= 0):
        raise ValueError(f"version must be None or an int > 0. Received: version={version!r}")
    h, w, c = _input_shape(classifier)
    if class_names is not None:
        class_names = [str(n) for n in class_names]
        num_classes = classifier.output_shape[-1] if isinstance(classifier.output_shape, tuple) else None
        if not class_names or (num_classes is not None and len(class_names) != num_classes):
            raise ValueError(
                f"class_names must have one name per class ({num_classes}). "
                f"Received: class_names={class_names!r}"
            )
    return h, w, c, class_names


def _version_metadata(metadata, name, version, shape, class_names, classifier):
    """metadata.json of a new version: the caller's `metadata` plus the keys the export writes, JSON-checked."""
    h, w, c = shape
    md = dict(metadata or {})
    md.update({
        "name": name,
        "version": version,
        "input": {"shape": [h, w, c], "dtype": "float32", "range": [0.0, 1.0]},
        "signatures": list(SIGNATURES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    if class_names:
        md["class_names"] = class_names
    branch = mixbn.inference_branch(classifier) if isinstance(classifier, keras.Model) else None
    if branch is not None:
        # The signatures are traced with this branch; the other one is not served.
        md["bn_branch"] = branch
    tfrobust_version = version_lib.__version__
    if tfrobust_version is not None:
        md["tfrobust_version"] = tfrobust_version
    # A JSON round trip first: converts NumPy values and fails before anything is written.
    md = json.loads(json.dumps(md, default=_jsonable, allow_nan=False))
    if "metrics" in md:
        validate_metadata(md)
    return md


def export_saved_model(classifier, base_dir, name, *, metadata=None, class_names=None, version=None,
                       verbose=False):
    """Exports a classifier as a servable SavedModel version with metadata.json.

    The SavedModel and metadata.json are written into a temporary
    `base_dir/<name>/.tmp-*` directory (TF Serving ignores names that are not
    integers) and renamed into place, so an interrupted export never leaves
    a partial version: on any exception the temporary directory is removed.
    Afterwards `base_dir/models.config` is rewritten (atomically) to list every
    model under `base_dir` (`write_models_config`).

    metadata.json holds the caller's `metadata` plus `name`, `version`,
    `input` ({shape, dtype "float32", range [0, 1]}), `signatures`,
    `class_names` (if given), `bn_branch` (for MixBN models: the BatchNorm
    branch that was exported, the layers' inference branch), `tfrobust_version`
    and `created` (UTC, ISO 8601); these keys overwrite the caller's. The result is checked with
    `validate_metadata` only if it has a "metrics" key, so that a model can
    be exported before it is evaluated; an export that reports metrics must
    follow the whole schema.

    Args:
        classifier: a built `keras.Model` from float32 NHWC [0, 1] images
            with static H, W, C to logits.
        base_dir: str, e.g. "saved_models".
        name: str, the model's name, e.g. "mnist_pgd_linf": letters, digits,
            "_", "." and "-", not starting with "." or "-".
        metadata: dict or None, stored in metadata.json. NumPy scalars and
            arrays are converted; other non-JSON values raise `TypeError`.
        class_names: list of str or None, one name per class, returned per
            prediction as `class_names`.
        version: int > 0 or None. None takes the next version after the
            largest existing one (1 if none). An existing version is never
            overwritten.
        verbose: bool, let Keras print the exported variables.

    Returns:
        str, the path of the version directory.

    Raises:
        FileExistsError: `version` exists already.
        ValueError: a bad `name`, `version`, `class_names`, classifier input
            shape, or metadata that does not follow the schema.

    Example:

    >>> path = export_saved_model(model, "saved_models", "mnist_pgd_linf",
    ...                           metadata=md, class_names=[str(i) for i in range(10)])
    >>> tf.saved_model.load(path).signatures["serving_default"](images=x)["classes"]
    """
    h, w, c, class_names = _check_export_arguments(classifier, name, version, class_names)
    model_dir = os.path.join(base_dir, name)
    if version is None:
        version = (latest_version(base_dir, name) or 0) + 1
    version = int(version)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version {version} of {name!r} exists at {final}; versions are never overwritten.")

    md = _version_metadata(metadata, name, version, (h, w, c), class_names, classifier)
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temporaries(model_dir)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=model_dir)
    try:
        export_dir = os.path.join(tmp, "export")
        _build_archive(classifier, class_names).write_out(export_dir, verbose=verbose)
        _write_metadata(md, export_dir)
        if os.path.exists(final):  # another export took this version meanwhile
            raise FileExistsError(f"Version {version} of {name!r} appeared at {final} during the export.")
        try:
            os.rename(export_dir, final)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(f"Version {version} of {name!r} appeared at {final} during the export.") from e
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_models_config(base_dir)
    return final


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(model_dir):
    """Deletes the `.tmp-<pid>-*` directories of exports whose process has ended (killed mid-export).

    A temporary of a live process is another export still writing, and is
    left alone; so is any name this module did not make.

    Returns:
        The removed paths.
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for entry in os.listdir(model_dir):
        pid = entry[len(TMP_PREFIX):].split("-", 1)[0]
        if not entry.startswith(TMP_PREFIX) or not pid.isdigit():
            continue
        path = os.path.join(model_dir, entry)
        if os.path.isdir(path) and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def load_metadata(version_dir):
    """Reads the metadata.json of an exported version.

    Args:
        version_dir: str, e.g. "saved_models/mnist_pgd_linf/3".

    Returns:
        dict.

    Raises:
        ValueError: the file is not a JSON object (the message names it).
    """
    path = os.path.join(version_dir, METADATA_FILE)
    try:
        with open(path) as f:
            md = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(md, dict):
        raise ValueError(f"{path} must hold a JSON object. Received: {type(md).__name__}")
    return md


def write_models_config(base_dir):
    """Writes `base_dir/models.config` for TF Serving's `--model_config_file`.

    Lists every model directory with at least one integer version, as
    `base_path: "/models/<name>"`, the layout of the tensorflow/serving
    Docker image. With `base_dir` mounted (or copied) at /models:

        tensorflow_model_server --rest_api_port=8501 \\
            --model_config_file=/models/models.config

        docker run -p 8501:8501 -v $PWD/saved_models:/models tensorflow/serving \\
            --model_config_file=/models/models.config

    Args:
        base_dir: str, the directory that holds one directory per model.

    Returns:
        str, the path of the written file (replaced atomically).
    """
    entries = []
    for name in sorted(os.listdir(base_dir)):
        if _NAME_RE.fullmatch(name) and _versions(os.path.join(base_dir, name)):
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "/models/{name}"\n'
                '    model_platform: "tensorflow"\n'
                "  }\n"
            )
    path = os.path.join(base_dir, MODELS_CONFIG_FILE)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=base_dir)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a server running as another user
        with os.fdopen(fd, "w") as f:
            f.write("model_config_list {\n" + "".join(entries) + "}\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
