"""A model server for exported tfrobust SavedModels that speaks TF Serving's REST API.

TF Serving's binary is not always installable (it is not on pip), so `tfrobust serve`
hosts a SavedModel in KServe's Python model server (the `kserve` package, in the
`serving` extra). KServe's v1 protocol is TF Serving's REST predict API, and it also
serves the v2 Open Inference Protocol (`/v2/models/NAME/infer`), liveness at `/` and
Prometheus metrics at `/metrics`. On top of KServe, this module answers the parts of
TF Serving's REST API that KServe's v1 protocol leaves out, so that a TF Serving
client works unchanged:

- `POST /v1/models/NAME[/versions/V]:predict` with `signature_name` and either
  `instances` (row format, answered with `predictions`) or `inputs` (columnar,
  answered with `outputs`); strings as `{"b64": ...}` (the `serve_image_bytes`
  signature takes encoded PNG/JPEG images).
- `GET /v1/models/NAME[/versions/V]`: TF Serving's `model_version_status`.
- `GET /v1/models/NAME[/versions/V]/metadata`: the signatures, and the export's
  `metadata.json` under `tfrobust`.

A bad request is answered with 400 and `{"error": ...}`, an unknown model or version
with 404, as TF Serving does. One version is served: the one named, or the newest.
"""

import asyncio
import base64
import binascii
import contextlib
import json
import os
import socket
import sys

import numpy as np

from tfrobust.export import saved_model as export_lib

INPUT = "images"
DEFAULT_SIGNATURE = "serving_default"
_DTYPES = {"float32": "DT_FLOAT", "uint8": "DT_UINT8", "string": "DT_STRING", "int64": "DT_INT64",
           "int32": "DT_INT32"}


class BadRequest(ValueError):
    """A request that cannot be answered: the server replies 400 with this message."""


class NotFound(LookupError):
    """An unknown model or version: the server replies 404 with this message."""


def resolve(path, name=None):
    """The model a path names, in TF Serving's layout `NAME/VERSION/saved_model.pb`.

    Args:
        path: a version directory (`saved_models/mnist_pgd_linf/3`) or a model
            directory (`saved_models/mnist_pgd_linf`, served at its newest version).
        name: the name to serve it under (default: the model directory's name).

    Returns:
        (name, version, version_directory).

    Raises:
        FileNotFoundError: no SavedModel there, in one line that names the path.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No such directory: {path}")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        version = os.path.basename(path)
        if not version.isdigit():
            raise FileNotFoundError(f"{path} is a SavedModel, but TF Serving's layout names a version directory by "
                                    "a number: serve NAME/VERSION, e.g. saved_models/mnist_pgd_linf/3")
        model_dir = os.path.dirname(path)
    else:
        model_dir = path
        latest = export_lib.latest_version(os.path.dirname(path), os.path.basename(path))
        if latest is None:
            raise FileNotFoundError(f"No SavedModel version under {path}: expected {path}/<number>/saved_model.pb")
        version = str(latest)
    return name or os.path.basename(model_dir), int(version), os.path.join(model_dir, version)


def _spec(signature):
    return signature.structured_input_signature[1][INPUT]


def _as_bytes(item):
    if isinstance(item, dict):
        if set(item) != {"b64"} or not isinstance(item["b64"], str):
            raise BadRequest('A binary value must be {"b64": "<base64 string>"}. Received an object with keys '
                             f"{sorted(item)}")
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRequest(f"Invalid base64 in a b64 value: {e}") from None
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    raise BadRequest(f"The string input takes {{\"b64\": ...}} objects or strings. Received: {type(item).__name__}")


def to_array(value, dtype):
    """A JSON value as the numpy array the signature's `dtype` input takes.

    Args:
        value: the decoded JSON (nested lists of numbers, or a list of
            `{"b64": ...}` objects / strings for a string input).
        dtype: the input's dtype name: "float32", "uint8" or "string".

    Raises:
        BadRequest: the value does not convert (ragged lists, non-numbers,
            integers outside uint8, a malformed b64 value).
    """
    if dtype == "string":
        items = value if isinstance(value, list) else [value]
        return np.array([_as_bytes(i) for i in items], dtype=object).reshape(np.shape(items))
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadRequest(f"The '{INPUT}' input must be a rectangular array of numbers for a {dtype} signature "
                         "(ragged lists or non-numbers received).") from None
    if dtype == "uint8":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or array.size and (
                array.min() < 0 or array.max() > 255):
            raise BadRequest("The serve_uint8 signature takes integers in [0, 255].")
        return array.astype(np.uint8)
    return array.astype(dtype)


def decode_request(body, signature_names):
    """Splits a TF Serving REST predict body into (signature name, input value, row format?).

    Args:
        body: the decoded JSON body.
        signature_names: the names the model serves.

    Raises:
        BadRequest: not an object, an unknown signature, neither or both of
            `instances` and `inputs`, or a named input other than `images`.
    """
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object with 'instances' (row format) or 'inputs' "
                         "(columnar format).")
    signature = body.get("signature_name", DEFAULT_SIGNATURE)
    if signature not in signature_names:
        raise BadRequest(f'Serving signature name: "{signature}" not found in signature def. '
                         f"The model has: {', '.join(sorted(signature_names))}")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("The request needs exactly one of 'instances' (row format) or 'inputs' (columnar format).")
    rows = "instances" in body
    value = body["instances"] if rows else body["inputs"]
    if rows:
        if not isinstance(value, list):
            raise BadRequest("'instances' must be a list, one entry per example.")
        if value and all(isinstance(v, dict) and set(v) == {INPUT} for v in value):
            value = [v[INPUT] for v in value]
    elif isinstance(value, dict) and "b64" not in value:
        if set(value) != {INPUT}:
            raise BadRequest(f"The model has one input, '{INPUT}'. Received inputs: {sorted(value)}")
        value = value[INPUT]
    return signature, value, rows


def _jsonable(array):
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(array).tolist()
    return array.tolist()


def encode_response(outputs, rows):
    """TF Serving's answer for a signature's outputs (a dict of numpy arrays).

    Row format: `{"predictions": [...]}`, a dict per example when there are
    several outputs. Columnar: `{"outputs": {name: value}}`, or the bare value
    for a single output.
    """
    names = sorted(outputs)
    if rows:
        if len(names) == 1:
            return {"predictions": _jsonable(outputs[names[0]])}
        columns = {k: _jsonable(outputs[k]) for k in names}
        return {"predictions": [{k: columns[k][i] for k in names} for i in range(len(columns[names[0]]))]}
    if len(names) == 1:
        return {"outputs": _jsonable(outputs[names[0]])}
    return {"outputs": {k: _jsonable(outputs[k]) for k in names}}


def _tf_error_message(error):
    # TF's message wraps the failed check in graph bookkeeping lines; the check's own line is the news.
    text = getattr(error, "message", None) or str(error)
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[{{")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return (lines[0] if lines else text.strip())[:500]


class Servable:
    """One version of an exported SavedModel and the calls TF Serving's REST API makes on it.

    Args:
        name: the served name.
        version: the version number.
        directory: the version directory (`NAME/VERSION`).
    """

    def __init__(self, name, version, directory):
        import tensorflow as tf

        self.name, self.version, self.directory = name, int(version), directory
        self._tf = tf
        self.loaded = tf.saved_model.load(directory)
        self.signatures = dict(self.loaded.signatures)
        try:
            self.tfrobust_metadata = export_lib.load_metadata(directory)
        except (FileNotFoundError, ValueError):
            self.tfrobust_metadata = None

    def check(self, name, version=None):
        """Raises NotFound unless `name` (and `version`, if given) is what this serves."""
        if name != self.name:
            raise NotFound(f"Servable not found for request: Latest({name})" if version is None else
                           f"Servable not found for request: Specific({name}, {version})")
        if version is not None and str(version) != str(self.version):
            raise NotFound(f"Servable not found for request: Specific({name}, {version}); this server has "
                           f"version {self.version}")

    def run(self, signature, value):
        """Calls a signature on a decoded JSON value; returns its outputs as numpy arrays.

        Raises:
            BadRequest: the value does not fit the signature (wrong rank, size,
                dtype, range), including the SavedModel's own in-graph checks.
        """
        tf = self._tf
        fn = self.signatures[signature]
        array = to_array(value, _spec(fn).dtype.name)
        self._check_shape(array, _spec(fn).dtype.name)
        try:
            out = fn(**{INPUT: tf.constant(array, dtype=_spec(fn).dtype)})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise BadRequest(_tf_error_message(e)) from None
        return {k: v.numpy() for k, v in out.items()}

    def _check_shape(self, array, dtype):
        # Checked here as well as in the graph: an unguarded SavedModel (exports before the in-graph
        # check) aborts the whole process on a wrong-rank batch inside oneDNN's convolution.
        want = (self.tfrobust_metadata or {}).get("input", {}).get("shape")
        if dtype == "string":
            if array.ndim != 1:
                raise BadRequest(f"The '{INPUT}' input of a string signature is a list of encoded images. "
                                 f"Received shape {list(array.shape)}")
        elif want and (array.ndim != 4 or list(array.shape[1:]) != list(want)):
            raise BadRequest(f"The '{INPUT}' input must have shape [batch, {', '.join(map(str, want))}]. "
                             f"Received shape {list(array.shape)}")

    def predict(self, body):
        """Answers a TF Serving REST predict body (a decoded JSON object)."""
        signature, value, rows = decode_request(body, self.signatures)
        return encode_response(self.run(signature, value), rows)

    def status(self):
        """TF Serving's `GET /v1/models/NAME` answer (with KServe's `name` and `ready`)."""
        return {"name": self.name, "ready": True,
                "model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self):
        """TF Serving's `GET /v1/models/NAME/metadata` answer, with the export's metadata.json."""
        def tensors(specs):
            return {k: {"dtype": _DTYPES.get(s.dtype.name, s.dtype.name), "name": k,
                        "tensor_shape": ({"unknown_rank": True} if s.shape.rank is None else
                                         {"dim": [{"size": str(-1 if d is None else d)} for d in s.shape.as_list()]})}
                    for k, s in specs.items()}

        defs = {n: {"inputs": tensors(f.structured_input_signature[1]), "outputs": tensors(f.structured_outputs),
                    "method_name": "tensorflow/serving/predict"} for n, f in self.signatures.items()}
        return {"model_spec": {"name": self.name, "version": str(self.version), "signature_name": ""},
                "metadata": {"signature_def": {"signature_def": defs}}, "tfrobust": self.tfrobust_metadata}


@contextlib.contextmanager
def _own_argv():
    # kserve parses sys.argv when imported (its own flags); tfrobust's flags are not for it.
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def _import_kserve():
    try:
        with _own_argv():
            import kserve
            from kserve import errors, model_server
    except ImportError as e:
        raise ImportError("tfrobust serve needs kserve: pip install kserve, or the serving extra, "
                          f"pip install '.[serving]' in a checkout ({e})") from None
    return kserve, errors, model_server


def _check_port(port, flag):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            raise ValueError(f"{flag} {port}: {e.strerror}") from None


def _kserve_model(kserve, errors, servable):
    """The servable as a KServe model: v1 bodies go through TF Serving's codec, v2 requests through KServe's."""

    class TFRobustModel(kserve.Model):
        def __init__(self):
            super().__init__(servable.name)
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None):
            if isinstance(payload, dict):
                return await _call(errors, servable.predict, payload)
            return await _call(errors, _predict_v2, kserve, servable, payload)

    return TFRobustModel()


def _predict_v2(kserve, servable, request):
    from kserve.protocol.infer_type import InferOutput, InferResponse

    if len(request.inputs) != 1:
        raise BadRequest(f"The model has one input, '{INPUT}'. Received {len(request.inputs)} inputs.")
    signature = (request.parameters or {}).get("signature_name", DEFAULT_SIGNATURE)
    if hasattr(signature, "string_param"):
        signature = signature.string_param
    if signature not in servable.signatures:
        raise BadRequest(f'Serving signature name: "{signature}" not found in signature def.')
    value = request.inputs[0].as_numpy()
    out = servable.run(signature, list(value.reshape(-1)) if value.dtype == object else value.tolist())
    outputs = []
    for name in sorted(out):
        array = out[name]
        output = InferOutput(name=name, shape=list(array.shape), datatype="BYTES" if array.dtype == object else
                             {"float32": "FP32", "int64": "INT64", "uint8": "UINT8", "int32": "INT32"}[array.dtype.name])
        output.set_data_from_numpy(array, binary_data=False)
        outputs.append(output)
    return InferResponse(response_id=request.id or "", model_name=servable.name, infer_outputs=outputs,
                         model_version=str(servable.version))


async def _call(errors, fn, *args):
    # TensorFlow releases the GIL: running signatures in threads lets requests overlap.
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    except BadRequest as e:
        raise errors.InvalidInput(str(e)) from None


def _add_tf_serving_routes(app, servable, errors):
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def answer(fn):
        try:
            return JSONResponse(fn())
        except NotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    async def predict(request: Request, name: str, version: str = None):
        try:
            servable.check(name, version)
        except NotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return JSONResponse({"error": f"The body is not JSON: {e}"}, status_code=400)
        try:
            return JSONResponse(await _call(errors, servable.predict, body))
        except errors.InvalidInput as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    def check_then(fn):
        def route(name: str, version: str = None):
            return answer(lambda: (servable.check(name, version), fn())[1])
        return route

    # Added before KServe includes its own routers, so these answer first.
    app.add_api_route("/v1/models/{name}/versions/{version}:predict", predict, methods=["POST"])
    app.add_api_route("/v1/models/{name}/versions/{version}/metadata", check_then(servable.metadata), methods=["GET"])
    app.add_api_route("/v1/models/{name}/versions/{version}", check_then(servable.status), methods=["GET"])
    app.add_api_route("/v1/models/{name}/metadata", check_then(servable.metadata), methods=["GET"])
    app.add_api_route("/v1/models/{name}:predict", predict, methods=["POST"])
    app.add_api_route("/v1/models/{name}", check_then(servable.status), methods=["GET"])


def serve(path, port=8501, name=None, grpc_port=None):
    """Serves a SavedModel version over HTTP until interrupted (SIGINT/SIGTERM).

    Args:
        path: a version directory or a model directory (newest version), TF
            Serving's layout.
        port: the HTTP port (TF Serving's REST default is 8501). KServe binds
            every interface.
        name: the served name (default: the model directory's name).
        grpc_port: also serve KServe's v2 gRPC API on this port (default: off).
    """
    model_name, version, directory = resolve(path, name)
    _check_port(port, "--port")
    if grpc_port is not None:
        _check_port(grpc_port, "--grpc-port")
    kserve, errors, model_server = _import_kserve()
    servable = Servable(model_name, version, directory)
    _add_tf_serving_routes(model_server.app, servable, errors)
    server = kserve.ModelServer(http_port=port, grpc_port=grpc_port or 8081, enable_grpc=grpc_port is not None,
                                enable_latency_logging=False)
    print(f"Serving {model_name} version {version} from {directory} at http://0.0.0.0:{port}/v1/models/{model_name} "
          f"(signatures: {', '.join(sorted(servable.signatures))}; v2 at /v2, metrics at /metrics)", flush=True)
    server.start([_kserve_model(kserve, errors, servable)])


__all__ = ["BadRequest", "NotFound", "Servable", "decode_request", "encode_response", "resolve", "serve", "to_array"]
