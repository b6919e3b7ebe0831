"""Shared test helpers: tiny models and the attack contract checks."""

import importlib.util
import os

import keras
import numpy as np
import tensorflow as tf

from tfrobust.attacks import losses as attack_losses
from tfrobust.attacks import projections


@keras.saving.register_keras_serializable(package="tfrobust_tests")
class CountingBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that counts the forward passes that update its statistics."""

    def build(self, input_shape):
        super().build(input_shape)
        self.updates = self.add_weight(shape=(), initializer="zeros", trainable=False, name="updates")

    def call(self, inputs, training=None, mask=None):
        if training:
            self.updates.assign_add(1.0)
        return super().call(inputs, training=training, mask=mask)


def tiny_classifier(input_shape=(8, 8, 1), num_classes=3, batch_norm=True, seed=1):
    """A tiny CNN that outputs logits; with a counting BatchNorm if asked."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(input_shape), keras.layers.Conv2D(4, 3, padding="same")]
    if batch_norm:
        layers.append(CountingBatchNorm(momentum=0.5))
    layers += [keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(num_classes)]
    return keras.Sequential(layers)


def toy_data(n=16, shape=(8, 8, 1), num_classes=3, seed=0):
    """Random [0, 1] images, labels and per-element seeds."""
    rng = np.random.RandomState(seed)
    x = rng.rand(n, *shape).astype("float32")
    y = (np.arange(n) % num_classes).astype("int64")
    s = rng.randint(0, 2**31 - 1, size=(n, 2)).astype("int32")
    return x, y, s


def bn_updates(model):
    """The number of statistics updates counted by the model's CountingBatchNorm layers."""
    return sum(float(l.updates.numpy()) for l in model.layers if isinstance(l, CountingBatchNorm))


def run_attack_test(attack, model=None, data=None, check_loss=True, atol=1e-6):
    """Checks the attack contract on a tiny model; returns x_adv.

    The eps-ball and [0, 1] bounds, determinism for given seeds, XLA
    compilation (same result), BatchNorm statistics untouched, and, for an
    untargeted attack, mean loss at x_adv >= mean loss at x.
    """
    model = model or tiny_classifier()
    x, y, s = data or toy_data()
    model(x[:1])  # build
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    x_adv = attack(model, x, y, s).numpy()

    dist = projections.distance(x_adv, x, attack.norm).numpy()
    assert dist.max() <= attack.eps + atol, (dist.max(), attack.eps)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    np.testing.assert_array_equal(attack(model, x, y, s).numpy(), x_adv)

    xla = tf.function(lambda a, b, c: attack(model, a, b, c), jit_compile=True)
    np.testing.assert_allclose(xla(x, y, s).numpy(), x_adv, atol=1e-5)

    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)

    if check_loss and not attack.targeted:
        loss = lambda v: float(tf.reduce_mean(attack_losses.cross_entropy(model(v, training=False), y)))  # noqa: E731
        assert loss(x_adv) >= loss(x), (loss(x_adv), loss(x))
    return x_adv


def fake_split(n_train=64, n_test=16):
    """A stand-in for `tfrobust.data.load` that returns random data of the right shape."""
    from tfrobust import data as data_lib

    def load(name, split, data_dir=None, download=False):
        info = data_lib.info(name)
        n = n_train if split == "train" else n_test
        rng = np.random.RandomState(1)
        return data_lib.Split(rng.randint(0, 256, (n, *info.image_shape)).astype("uint8"),
                              (np.arange(n) % info.num_classes).astype("int64"), info, "synthetic")

    return load


_MIRRORED = []


def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    Several MirroredStrategy objects in one process share collective group
    keys but count instance keys separately, so their all-reduces can collide
    ("Shape mismatch in the collective instance"). One instance avoids that.
    """
    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _MIRRORED[0]


def separable_data(n=200, num_classes=2, shape=(8, 8, 1), seed=0):
    """Images whose class is the brighter of `num_classes` vertical stripes: learnable in seconds."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, num_classes, n)
    x = rng.rand(n, *shape).astype("float32") * 0.5
    width = shape[1] // num_classes
    for k in range(num_classes):
        x[y == k, :, k * width:(k + 1) * width] += 0.5
    return x, y.astype("int64")


def train_tiny(x, y, num_classes=2, epochs=10, seed=0):
    """A linear classifier on flattened pixels, trained to near 100% on `separable_data`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(num_classes)])
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=50, verbose=0)
    return model


def free_port():
    """A TCP port that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`tfrobust serve` in a subprocess, for tests that send it real HTTP requests.

    Use as a context manager; `url` is the server's base URL once it answers. Its
    output goes to `log_path` (a pipe could fill up and stall the server).
    """

    def __init__(self, model_path, log_path, *args, timeout=240):
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfrobust", "serve", str(model_path), "--port", str(self.port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tfrobust serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5):
                    return
            except OSError:
                if time.time() > deadline:
                    self.close()
                    raise RuntimeError(f"tfrobust serve did not answer in {timeout} s:\n{self.log()}")
                time.sleep(0.5)

    def log(self):
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def close(self):
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_json(url, body=None, method=None, timeout=60):
    """(status, decoded JSON answer) of a request; `body` is sent as JSON."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def load_benchmark(name):
    """The module of `benchmarks/<name>.py` (the benchmarks directory is not a package)."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
