"""The PyTorch peer of `tfrobust bench` computes what tfrobust's step computes (skipped without torch)."""

import io
import json
import os

import pytest

from tests import helpers
from tfrobust import bench, models

torch = pytest.importorskip("torch")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "torch_reference.py")


@pytest.fixture(scope="module")
def reference():
    return helpers.load_benchmark("torch_reference")


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "wrn-28-10"])
def test_same_network_as_tfrobust(reference, name):
    net = reference.build(bench.REFERENCE_MODELS[name])
    keras_model = models.build(name, (32, 32, 3), 10)
    assert sum(p.numel() for p in net.parameters()) == sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    # Non-trainable: BN's moving statistics (PyTorch's num_batches_tracked counters aside).
    buffers = sum(b.numel() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert buffers == sum(int(w.numpy().size) for w in keras_model.non_trainable_weights)
    assert reference.forward_flops(net) == bench.model_flops(keras_model)


def test_preact_projection_convolves_the_pre_activated_input(reference):
    # Equal counts do not tell the two shortcuts apart; a BN shift that the ReLU
    # clips does: with the pre-activated input, the projection sees zeros.
    torch.manual_seed(0)
    block = reference.PreActBlock(4, 8, 2).eval()
    with torch.no_grad():
        block.bn1.bias.fill_(-100.0)
    x = torch.rand(1, 4, 8, 8)
    with torch.no_grad():
        assert float(block.proj(x).abs().max()) > 0  # what a shortcut of the raw input would add
    y = block.conv2(torch.relu(block.bn2(block.conv1(torch.zeros_like(x)))))
    torch.testing.assert_close(block(x), y)


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


def test_fgsm_rs_takes_one_step_of_1_25_eps_from_a_uniform_start(reference):
    torch.manual_seed(0)
    net = reference.CifarResNet(8).eval()
    x, y = torch.rand(4, 3, 32, 32) * 0.5 + 0.25, torch.randint(0, 10, (4,))  # away from the [0, 1] bounds
    eps = 8 / 255
    torch.manual_seed(1)
    x_adv = reference.fgsm_rs(net, x, y, eps)
    torch.manual_seed(1)
    delta = ((x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) - x).requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x + delta), y), delta)
    delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    torch.testing.assert_close(x_adv, x + ((x + delta).clamp(0, 1) - x))
    # The 1.25 eps step leaves the ball from most starts: projection puts many pixels on its edge.
    assert float(((x_adv - x).abs() > eps - 1e-6).float().mean()) > 0.3


def _count_forwards(runner):
    calls = []
    runner.net.register_forward_hook(lambda m, args, out: calls.append((m.training, out.dtype)))
    runner.adv_step()
    return calls


@pytest.mark.parametrize("method,steps,attack_passes", [("pgd", 3, 3), ("fgsm_rs", 3, 1)])
def test_runner_method_sets_the_attack_passes(reference, method, steps, attack_passes):
    runner = reference.Runner("eager", batch=2, steps=steps, model="resnet20", method=method)
    calls = _count_forwards(runner)
    assert [training for training, _ in calls] == [False] * attack_passes + [True]


def test_bf16_config_autocasts_the_attack_and_the_training_forward(reference):
    runner = reference.Runner("channels_last_bf16", batch=2, model="preactresnet18", method="fgsm_rs")
    calls = _count_forwards(runner)
    assert calls == [(False, torch.bfloat16), (True, torch.bfloat16)]
    assert all(p.dtype == torch.float32 for p in runner.net.parameters())
    assert runner.x.is_contiguous(memory_format=torch.channels_last)
    float32_runner = reference.Runner("channels_last", batch=2, model="resnet20", method="fgsm_rs")
    assert [dtype for _, dtype in _count_forwards(float32_runner)] == [torch.float32] * 2


def test_configs_and_precisions_agree_with_tfrobust(reference):
    assert reference.CONFIG_PRECISION == bench.TorchReference.PRECISION
    assert set(reference.MODELS) == set(bench.REFERENCE_MODELS.values())
    assert reference.METHODS == bench.REFERENCE_METHODS


def test_serve_answers_each_request_and_marks_the_first(reference):
    requests = [{"config": "channels_last", "kind": kind, "iters": 1, "batch": 2, "steps": 1, "threads": 1}
                for kind in ("adv", "clean")]
    out = io.StringIO()
    reference.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["first"] for r in replies] == [True, False]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in replies)
    assert all((r["model"], r["method"]) == ("resnet20", "pgd") for r in replies)  # the defaults


def test_serve_runs_the_requested_model_method_and_config(reference):
    base = {"kind": "adv", "iters": 1, "batch": 2, "steps": 1, "threads": 1}
    requests = [dict(base, config="channels_last_bf16", model="preactresnet18", method="fgsm_rs"),
                dict(base, config="channels_last_bf16", model="preactresnet18", method="pgd"),
                dict(base, config="channels_last_bf16", model="preactresnet18", method="fgsm_rs")]
    out = io.StringIO()
    reference.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["config"], r["model"], r["method"]) for r in replies] == [
        (r["config"], r["model"], r["method"]) for r in requests]
    # A new method is a new runner; the same triple again reuses it.
    assert [r["first"] for r in replies] == [True, True, False]


def test_step_peak_rss_of_a_fresh_pytorch_process():
    ref = bench.TorchReference(script=SCRIPT, threads=1)
    try:
        rss = ref.step_peak_rss("eager", 2, 1, method="fgsm_rs")
        setup = ref.step_peak_rss("eager", 2, 1, setup_only=True, method="fgsm_rs")
    finally:
        ref.close()
    assert 50 < setup < rss < 10000


@pytest.mark.parametrize("name", ["resnet8", "preact_resnet18"])
def test_port_computes_the_keras_classifiers_logits(reference, name):
    import numpy as np

    harness = helpers.load_benchmark("autoattack_reference")
    keras_model = (models.cifar_resnet(8, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3]) if name == "resnet8" else
                   models.build(name, (32, 32, 3), 10, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3]))
    rng = np.random.default_rng(0)
    for layer in keras_model.layers:  # statistics other than the initial ones, so that each BN matters
        if hasattr(layer, "moving_variance"):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
    x = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    net = reference.port(harness.keras_layers(keras_model))
    with torch.no_grad():
        theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(theirs, np.asarray(keras_model(x, training=False)), atol=1e-4)
    with pytest.raises(ValueError, match="no PyTorch port of a 'cnn' network"):
        reference.port({"architecture": "cnn"})
