"""The TF Serving client against a stand-in REST server on loopback.

The stand-in implements TF Serving's REST predict contract by running the
exported SavedModel's signatures in this (real TF) process, so the request and
response JSON that cross the socket are real.
"""

import base64
import http.server
import json
import re
import threading

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust import cli, serving
from tfrobust.export import saved_model as export_lib


class _StandIn(http.server.BaseHTTPRequestHandler):
    models = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        m = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not m or m.group(1) not in self.models:
            return self._send(404, {"error": f"Servable not found for request: {self.path}"})
        sig = self.models[m.group(1)].signatures[body.get("signature_name", "serving_default")]
        spec = list(sig.structured_input_signature[1].values())[0]
        instances = body["instances"]
        try:
            if spec.dtype == tf.string:
                x = tf.constant([base64.b64decode(i["b64"]) for i in instances])
            else:
                x = tf.constant(np.asarray(instances), dtype=spec.dtype)
            out = sig(images=x)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            return self._send(400, {"error": str(e)[:200]})
        rows = [{k: _jsonable(v[i]) for k, v in out.items()} for i in range(len(instances))]
        self._send(200, {"predictions": rows})

    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _jsonable(t):
    v = t.numpy()
    if isinstance(v, bytes):
        return v.decode()
    return v.tolist()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = helpers.tiny_classifier(input_shape=(8, 8, 1), num_classes=3)
    path = export_lib.export_saved_model(model, str(tmp_path_factory.mktemp("sm")), "toy",
                                         class_names=["a", "b", "c"])
    _StandIn.models = {"toy": tf.saved_model.load(path)}
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield model, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_float_uint8_and_png_requests_match_the_model(server):
    model, url = server
    x, _, _ = helpers.toy_data(n=4)
    want = model(x, training=False).numpy()
    out = serving.predict_rest(url, "toy", x)
    np.testing.assert_allclose(out["logits"], want, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))
    assert list(out["class_names"]) == [["a", "b", "c"][i] for i in want.argmax(-1)]

    q = np.round(x * 255).astype("uint8")
    want_q = model(q.astype("float32") / 255, training=False).numpy()
    np.testing.assert_allclose(serving.predict_rest(url, "toy", q)["logits"], want_q, atol=1e-5)
    pngs = [tf.io.encode_png(img).numpy() for img in q]
    np.testing.assert_allclose(serving.predict_rest(url, "toy", pngs)["logits"], want_q, atol=1e-5)


def test_server_errors_surface(server):
    _, url = server
    x, _, _ = helpers.toy_data(n=2)
    with pytest.raises(serving.ServingError, match="404"):
        serving.predict_rest(url, "nope", x)
    with pytest.raises(serving.ServingError, match="400"):
        serving.predict_rest(url, "toy", np.zeros((1, 9, 8, 1), "float32"))
    with pytest.raises(serving.ServingError, match="Cannot reach"):
        serving.predict_rest("http://127.0.0.1:9", "toy", x, timeout=2)
    with pytest.raises(ValueError, match="must lie in"):
        serving.predict_rest(url, "toy", x * 2)


def test_serve_client_command_prints_predictions(server, tmp_path, capsys):
    _, url = server
    x, _, _ = helpers.toy_data(n=3)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["serve-client", "--model", "toy", "--url", url, "--npy", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "| 2 |" in out and "probability" in out
