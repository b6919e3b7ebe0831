"""The TF Serving client (tfrobust.serving) against `tfrobust serve` on loopback, in a subprocess."""

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust import cli, serving
from tfrobust.export import saved_model as export_lib

pytest.importorskip("kserve", reason="the serving extra (kserve) is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = helpers.tiny_classifier(input_shape=(8, 8, 1), num_classes=3)
    base = tmp_path_factory.mktemp("sm")
    export_lib.export_saved_model(model, str(base), "toy", class_names=["a", "b", "c"])
    with helpers.ServerProcess(base / "toy", str(base / "server.log")) as process:
        yield model, process.url


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
    with pytest.raises(serving.ServingError, match="answered 404: Servable not found"):
        serving.predict_rest(url, "toy", x, version=9)


def test_serve_client_command_prints_predictions(server, tmp_path, capsys):
    _, url = server
    x, _, _ = helpers.toy_data(n=3)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["serve-client", "--model", "toy", "--url", url, "--npy", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "| 2 |" in out and "probability" in out


def test_serve_client_reports_server_errors_in_one_line(server, tmp_path, capsys):
    _, url = server
    np.save(tmp_path / "bad.npy", np.zeros((1, 9, 8, 1), "float32"))
    assert cli.main(["serve-client", "--model", "toy", "--url", url, "--npy", str(tmp_path / "bad.npy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answered 400" in err and "shape" in err
    assert cli.main(["serve-client", "--model", "toy", "--url", "http://127.0.0.1:9",
                     "--npy", str(tmp_path / "bad.npy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Cannot reach" in err
