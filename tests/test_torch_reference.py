"""The PyTorch peer of `tfrobust bench` computes what tfrobust's step computes (skipped without torch)."""

import importlib.util
import io
import json
import os

import pytest

from tfrobust import bench, models

torch = pytest.importorskip("torch")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "torch_reference.py")


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("torch_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_network_as_tfrobust_resnet20(reference):
    net = reference.CifarResNet(20)
    keras_model = models.build("resnet20", (32, 32, 3), 10)
    assert sum(p.numel() for p in net.parameters()) == sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert reference.forward_flops(net) == bench.model_flops(keras_model)


def test_pgd_stays_in_the_ball_and_raises_the_loss(reference):
    torch.manual_seed(0)
    net = reference.CifarResNet(8).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    eps = 8 / 255
    x_adv = reference.pgd(net, x, y, eps, eps / 2, 3)
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    loss = torch.nn.functional.cross_entropy
    assert float(loss(net(x_adv), y)) > float(loss(net(x), y))


def test_serve_answers_each_request_and_marks_the_first(reference):
    requests = [{"config": "channels_last", "kind": kind, "iters": 1, "batch": 2, "steps": 1, "threads": 1}
                for kind in ("adv", "clean")]
    out = io.StringIO()
    reference.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["first"] for r in replies] == [True, False]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in replies)


def test_step_peak_rss_of_a_fresh_pytorch_process():
    ref = bench.TorchReference(script=SCRIPT, threads=1)
    try:
        rss = ref.step_peak_rss("eager", 2, 1)
        setup = ref.step_peak_rss("eager", 2, 1, setup_only=True)
    finally:
        ref.close()
    assert 50 < setup < rss < 10000
