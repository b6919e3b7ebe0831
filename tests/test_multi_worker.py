"""MultiWorkerMirroredStrategy: two worker processes on loopback train like one process.

Each worker is a separate Python process with its own TF_CONFIG (localhost
ports); their gradients are all-reduced over gRPC. The update after a few
steps must equal a single-process run on the same global batches.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
import numpy as np
import keras
import tensorflow as tf
from tests import helpers
from tfrobust import distribute
from tfrobust.attacks import PGD
from tfrobust.training import AdversarialModel

out = sys.argv[1]
strategy = distribute.get_strategy("auto")
x, y, s = helpers.toy_data(n=64)
ds = tf.data.Dataset.from_tensor_slices(({{"image": x, "seed": s}}, y)).batch(16)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
ds = ds.with_options(options)
if sys.argv[2] == "sync_bn":
    # float32 round-off alone moves BN-cancelled gradients by ~1e-3 relative under a different summation order.
    keras.config.set_floatx("float64")
with strategy.scope():
    if sys.argv[2] == "sync_bn":
        keras.utils.set_random_seed(1)
        classifier = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(momentum=0.5, synchronized=True),
            keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3)])
    else:
        classifier = helpers.tiny_classifier(batch_norm=False)
    model = AdversarialModel(classifier, attack=PGD(0.1, steps=2, select="last"))
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
model.fit(ds, epochs=2, verbose=0)
np.savez(out, *[w.numpy() for w in model.classifier.weights],
         kind=np.array(type(strategy).__name__), steps=model.optimizer.iterations.numpy())
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _run_single_and_two_workers(single_command, worker_command, cwd=None):
    """Runs `single_command` without TF_CONFIG, then `worker_command(index)` as two loopback workers."""
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    base_env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # The checkout under test, whatever copy of tfrobust is installed.
    base_env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    single = subprocess.run(single_command, env=base_env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(base_env, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                   "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(worker_command(index), env=env, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


@pytest.mark.parametrize("model", ["no_bn", "sync_bn"])
def test_two_workers_on_loopback_match_one_process(model, tmp_path):
    # sync_bn: BatchNorm whose statistics are all-reduced across the workers
    # (without synchronized=True the weights differ by ~1.8, measured).
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT.format(repo=REPO))
    _run_single_and_two_workers([sys.executable, str(script), str(tmp_path / "single.npz"), model],
                                lambda i: [sys.executable, str(script), str(tmp_path / f"worker{i}.npz"), model])

    one = np.load(tmp_path / "single.npz")
    w0, w1 = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert str(w0["kind"]) == "CollectiveAllReduceStrategy" and str(one["kind"]) == "_DefaultDistributionStrategy"
    assert int(w0["steps"]) == int(one["steps"]) == 8
    keys = [k for k in one.files if k.startswith("arr_")]
    sys.path.insert(0, REPO)
    from tests import helpers

    if model == "no_bn":
        fresh = [w.numpy() for w in helpers.tiny_classifier(batch_norm=False).weights]
        assert any(not np.allclose(one[f"arr_{i}"], w) for i, w in enumerate(fresh))  # training moved them
    else:
        assert len(keys) == 8  # conv 2, BatchNorm 4 (the moving statistics compared too), dense 2
        assert one["arr_0"].dtype == np.float64
    atol = 1e-5 if model == "no_bn" else 1e-10
    for key in keys:
        np.testing.assert_allclose(w0[key], w1[key], atol=atol / 10)  # the workers agree
        np.testing.assert_allclose(w0[key], one[key], atol=atol)  # and equal one process


def test_tfrobust_train_on_two_workers_writes_one_run_equal_to_one_process(tmp_path):
    """`tfrobust train` under a two-worker TF_CONFIG: the chief writes the run, worker 1 its own copy."""
    import keras

    sys.path.insert(0, REPO)
    import tfrobust.experiment  # noqa: F401  (registers the custom objects model.keras refers to)

    recipe = os.path.join(REPO, "recipes", "tfrobust_mnist_linf_pgd_cnn.py")
    sets = ["data.n_train=64", "data.batch_size=16", "train.epochs=1", "train.val_n=0", "attack.steps=1",
            "model.width=1"]
    command = [sys.executable, "-m", "tfrobust", "train", recipe, "--variant", "small"]
    for item in sets:
        command += ["--set", item]
    _run_single_and_two_workers(command + ["--output", str(tmp_path / "single")],
                                lambda i: command + ["--output", str(tmp_path / "multi")], cwd=str(tmp_path))

    multi = tmp_path / "multi"
    assert len((multi / "command.txt").read_text().splitlines()) == 1  # the chief's line only
    assert (multi / "workers" / "worker_1" / "model.keras").exists()
    assert not (multi / "workers" / "worker_0").exists()
    one = keras.models.load_model(tmp_path / "single" / "model.keras")
    chief = keras.models.load_model(multi / "model.keras")
    other = keras.models.load_model(multi / "workers" / "worker_1" / "model.keras")
    assert int(chief.optimizer.iterations.numpy()) == int(one.optimizer.iterations.numpy()) == 4
    for a, b, c in zip(one.classifier.weights, chief.classifier.weights, other.classifier.weights):
        np.testing.assert_allclose(b.numpy(), c.numpy(), atol=1e-6)
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
