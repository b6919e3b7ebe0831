"""`tfrobust serve` (KServe's model server speaking TF Serving's REST API), in a subprocess on loopback."""

import base64
import concurrent.futures
import json
import os
import re
import socket

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust import model_server
from tfrobust.export import saved_model as export_lib

pytest.importorskip("kserve", reason="the serving extra (kserve) is not installed")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)
NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("sm")
    for seed in (1, 2):  # two versions: the server must serve the newest
        model = helpers.tiny_classifier(input_shape=SHAPE, num_classes=3, seed=seed)
        path = export_lib.export_saved_model(model, str(base), "toy", class_names=NAMES)
    loaded = tf.saved_model.load(path)
    with helpers.ServerProcess(base / "toy", str(base / "server.log")) as server:
        yield server, loaded


def _expected(loaded, signature, x):
    return {k: v.numpy() for k, v in loaded.signatures[signature](images=tf.constant(x)).items()}


def _predict(server, body, path="/v1/models/toy:predict"):
    return helpers.http_json(server.url + path, body)


def test_row_and_columnar_requests_return_exactly_the_signatures_outputs(served):
    server, loaded = served
    x, _, _ = helpers.toy_data(n=5, shape=SHAPE)
    want = _expected(loaded, "serving_default", x)
    status, answer = _predict(server, {"instances": x.tolist()})
    assert status == 200
    rows = answer["predictions"]
    np.testing.assert_array_equal(np.asarray([r["logits"] for r in rows], "float32"), want["logits"])
    np.testing.assert_array_equal(np.asarray([r["probabilities"] for r in rows], "float32"), want["probabilities"])
    assert [r["classes"] for r in rows] == want["classes"].tolist()
    assert [r["class_names"] for r in rows] == [b.decode() for b in want["class_names"]]

    status, answer = _predict(server, {"signature_name": "serving_default", "inputs": {"images": x.tolist()}})
    assert status == 200
    np.testing.assert_array_equal(np.asarray(answer["outputs"]["logits"], "float32"), want["logits"])
    status, bare = _predict(server, {"inputs": x.tolist()})
    assert status == 200 and bare["outputs"]["classes"] == answer["outputs"]["classes"]
    # Named-input rows, as TF Serving accepts them.
    status, named = _predict(server, {"instances": [{"images": row} for row in x.tolist()]})
    assert status == 200 and named["predictions"] == rows


def test_uint8_and_base64_png_signatures(served):
    server, loaded = served
    x, _, _ = helpers.toy_data(n=3, shape=SHAPE)
    q = np.round(x * 255).astype("uint8")
    want = _expected(loaded, "serve_uint8", q)
    status, answer = _predict(server, {"signature_name": "serve_uint8", "instances": q.tolist()})
    assert status == 200
    np.testing.assert_array_equal(np.asarray([r["logits"] for r in answer["predictions"]], "float32"), want["logits"])

    pngs = [tf.io.encode_png(img).numpy() for img in q]
    want_png = _expected(loaded, "serve_image_bytes", np.asarray(pngs, dtype=object))
    np.testing.assert_array_equal(want_png["logits"], want["logits"])  # the PNG round trip is lossless
    body = {"signature_name": "serve_image_bytes", "instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]}
    status, answer = _predict(server, body)
    assert status == 200
    np.testing.assert_array_equal(np.asarray([r["logits"] for r in answer["predictions"]], "float32"),
                                  want_png["logits"])


def test_the_version_in_the_url_status_and_metadata(served):
    server, loaded = served
    x, _, _ = helpers.toy_data(n=2, shape=SHAPE)
    status, pinned = _predict(server, {"instances": x.tolist()}, "/v1/models/toy/versions/2:predict")
    assert status == 200
    assert pinned == _predict(server, {"instances": x.tolist()})[1]
    status, answer = _predict(server, {"instances": x.tolist()}, "/v1/models/toy/versions/1:predict")
    assert status == 404 and "Specific(toy, 1)" in answer["error"]

    status, answer = helpers.http_json(server.url + "/v1/models/toy")
    assert status == 200
    assert answer["model_version_status"] == [{"version": "2", "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}]
    assert helpers.http_json(server.url + "/v1/models/toy/versions/2")[0] == 200
    assert helpers.http_json(server.url + "/v1/models/toy/versions/3")[0] == 404
    status, answer = helpers.http_json(server.url + "/v1/models/toy/metadata")
    assert status == 200
    defs = answer["metadata"]["signature_def"]["signature_def"]
    assert sorted(defs) == sorted(export_lib.SIGNATURES)
    assert defs["serve_uint8"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert answer["tfrobust"]["input"]["shape"] == list(SHAPE) and answer["tfrobust"]["version"] == 2


@pytest.mark.parametrize("body, match", [
    ({"instances": np.zeros((2, 8, 8)).tolist()}, "shape"),          # rank 3: aborted unguarded servers
    ({"instances": np.zeros((1, 9, 8, 1)).tolist()}, "shape"),
    ({"instances": [[["x"]]]}, "numbers"),
    ({"instances": np.full((1, 8, 8, 1), 2.0).tolist()}, "[0, 1]"),
    ({"signature_name": "serve_uint8", "instances": np.full((1, 8, 8, 1), 300).tolist()}, "[0, 255]"),
    ({"signature_name": "serve_image_bytes", "instances": [{"b64": "%%%"}]}, "base64"),
    ({"signature_name": "serve_image_bytes", "instances": [{"b64": base64.b64encode(b"no image").decode()}]}, ""),
    ({"signature_name": "nope", "instances": []}, "nope"),
    ({"instances": [], "inputs": []}, "exactly one"),
    ({"data": 1}, "exactly one"),
    ([1, 2], "JSON object"),
])
def test_a_bad_request_is_a_400_with_a_message_and_the_server_lives(served, body, match):
    server, _ = served
    status, answer = _predict(server, body)
    assert status == 400, answer
    assert match in answer["error"]
    assert server.process.poll() is None
    assert helpers.http_json(server.url + "/v1/models/toy")[0] == 200


def test_nan_is_refused(served):
    server, _ = served
    x = np.zeros((1, *SHAPE), "float32")
    x[0, 0, 0, 0] = np.nan
    body = ('{"instances": ' + str(x.tolist()).replace("nan", "NaN") + "}").encode()
    status, answer = _predict(server, body)
    assert status == 400 and "[0, 1]" in answer["error"]


def test_an_unknown_model_is_a_404(served):
    server, _ = served
    status, answer = _predict(server, {"instances": [[[[0.0]]]]}, "/v1/models/other:predict")
    assert status == 404 and "other" in answer["error"]
    assert helpers.http_json(server.url + "/v1/models/other")[0] == 404


def test_concurrent_requests_each_get_their_own_answer(served):
    server, loaded = served
    batches = [helpers.toy_data(n=1 + i % 3, shape=SHAPE, seed=i)[0] for i in range(12)]

    def ask(x):
        return _predict(server, {"inputs": x.tolist()})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, batches))
    for x, (status, answer) in zip(batches, answers):
        assert status == 200
        np.testing.assert_array_equal(np.asarray(answer["outputs"]["logits"], "float32"),
                                      _expected(loaded, "serving_default", x)["logits"])


def test_v2_open_inference_protocol_and_metrics(served):
    server, loaded = served
    x, _, _ = helpers.toy_data(n=2, shape=SHAPE)
    body = {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, answer = helpers.http_json(server.url + "/v2/models/toy/infer", body)
    assert status == 200, answer
    out = {o["name"]: o for o in answer["outputs"]}
    np.testing.assert_array_equal(np.asarray(out["logits"]["data"], "float32").reshape(out["logits"]["shape"]),
                                  _expected(loaded, "serving_default", x)["logits"])
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as r:
        assert r.status == 200 and b"# TYPE" in r.read()  # Prometheus' text format


def test_resolve_names_a_version_or_the_newest(tmp_path):
    for v in ("1", "3"):
        os.makedirs(tmp_path / "m" / v)
        (tmp_path / "m" / v / "saved_model.pb").write_bytes(b"")
    assert model_server.resolve(str(tmp_path / "m")) == ("m", 3, str(tmp_path / "m" / "3"))
    assert model_server.resolve(str(tmp_path / "m" / "1"), name="x") == ("x", 1, str(tmp_path / "m" / "1"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No SavedModel version under"):
        model_server.resolve(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="No such directory"):
        model_server.resolve(str(tmp_path / "missing"))
    os.makedirs(tmp_path / "m" / "latest")
    (tmp_path / "m" / "latest" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="names a version directory by a number"):
        model_server.resolve(str(tmp_path / "m" / "latest"))


def test_serve_errors_are_one_line(tmp_path, capsys):
    from tfrobust import cli

    assert cli.main(["serve", str(tmp_path / "missing"), "--port", str(helpers.free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such directory" in err

    os.makedirs(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", str(tmp_path / "m"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--port {port}: Address already in use" in err


def test_the_readme_example(tmp_path):
    """README's serving section: its request, sent to the shipped model, gets the answer it shows."""
    readme = open(os.path.join(REPO, "README.md")).read()
    request = readme.split("<!-- serving-example-request -->")[1].split("```")[1]
    shown = json.loads(readme.split("<!-- serving-example-answer -->")[1].split("```")[1])
    model = re.search(r"tfrobust serve (\S+)", request).group(1)
    body = json.loads(re.search(r"-d '([^']+)'", request).group(1))
    path = re.search(r"localhost:8501(\S+)", request).group(1)
    with helpers.ServerProcess(os.path.join(REPO, model), str(tmp_path / "server.log")) as server:
        status, answer = helpers.http_json(server.url + path, body)
    assert status == 200
    (got,), (want,) = answer["predictions"], shown["predictions"]
    assert (got["classes"], got["class_names"]) == (want["classes"], want["class_names"])
    # Another CPU may round the last float32 bits differently (oneDNN kernels).
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-4, atol=1e-7)
