"""A client for models served by TF Serving: REST (`/v1/models/<name>:predict`) and gRPC.

REST needs nothing beyond the standard library. gRPC needs the optional
`tensorflow-serving-api` package (the `serving` extra: `pip install -e '.[serving]'` in a checkout).

Start a server for the shipped models with:

    tensorflow_model_server --rest_api_port=8501 --port=8500 \\
        --model_config_file=$PWD/saved_models/models.config   # paths /models/<name>: see below
    docker run -p 8501:8501 -p 8500:8500 -v $PWD/saved_models:/models tensorflow/serving \\
        --model_config_file=/models/models.config
"""

import base64
import json
import urllib.error
import urllib.request

import numpy as np


class ServingError(RuntimeError):
    """The server answered with an error, or not at all."""


def _post(url, body, timeout):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as e:
        raise ServingError(f"{url} answered {e.code}: {_error_detail(e.read())}") from None
    except urllib.error.URLError as e:
        raise ServingError(f"Cannot reach {url}: {e.reason}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ServingError(f"No valid answer from {url}: {e}") from None


def _error_detail(body):
    # TF Serving and KServe answer {"error": "..."}; anything else is shown as text, on one line.
    text = body.decode(errors="replace")
    try:
        text = json.loads(text).get("error", text)
    except (json.JSONDecodeError, AttributeError):
        pass
    return " ".join(str(text).split())[:500]


def predict_rest(url, model, images, *, signature=None, version=None, timeout=30.0):
    """Sends a batch to TF Serving's REST predict API and returns its predictions.

    Args:
        url: the server's base URL, e.g. "http://localhost:8501".
        model: the served model's name, e.g. "mnist_pgd_linf".
        images: float32 [0, 1] or uint8 array `[N, H, W, C]`, or a list of
            encoded PNG/JPEG bytes (sent as `{"b64": ...}`).
        signature: the signature to call; by default `serving_default` for
            float32, `serve_uint8` for uint8 and `serve_image_bytes` for bytes.
        version: a model version to pin, or None for the newest.
        timeout: seconds.

    Returns:
        A dict of numpy arrays: `logits`, `probabilities`, `classes` (and
        `class_names` if the model has them).
    """
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (bytes, bytearray)):
        instances = [{"b64": base64.b64encode(b).decode()} for b in images]
        signature = signature or "serve_image_bytes"
    else:
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be NHWC, rank 4. Received: images.shape={images.shape}")
        if images.dtype == np.uint8:
            signature = signature or "serve_uint8"
        elif images.dtype == np.float32:
            if images.size and (images.min() < 0 or images.max() > 1):
                raise ValueError(f"float32 images must lie in [0, 1]. Received: max={images.max():.4g}")
            signature = signature or "serving_default"
        else:
            raise TypeError(f"images must be float32 in [0, 1] or uint8. Received: images.dtype={images.dtype}")
        instances = images.tolist()
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "") + ":predict"
    answer = _post(url.rstrip("/") + path, {"signature_name": signature, "instances": instances}, timeout)
    if "predictions" not in answer:
        raise ServingError(f"No predictions in the answer: {str(answer)[:500]}")
    rows = answer["predictions"]
    keys = rows[0].keys() if rows and isinstance(rows[0], dict) else ["logits"]
    return {k: np.asarray([r[k] if isinstance(r, dict) else r for r in rows]) for k in keys}


def predict_grpc(target, model, images, *, signature="serving_default", timeout=30.0):
    """Sends a float32 batch over gRPC (`PredictionService/Predict`).

    Args:
        target: "host:port" of the gRPC API (TF Serving's --port, 8500 by default).
        model: the served model's name.
        images: float32 [0, 1] array `[N, H, W, C]` (uint8 with `signature="serve_uint8"`).

    Returns:
        A dict of numpy arrays, as `predict_rest`.
    """
    try:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as e:
        raise ImportError("gRPC needs the optional package: pip install tensorflow-serving-api") from e
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.asarray(images)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            detail = " ".join(str(e.details()).split())[:500]
            raise ServingError(f"{target} answered {e.code().name}: {detail}") from None
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
