"""The PyTorch peer of `tfrobust bench`: adversarial training steps (PGD-k, FGSM-RS) in plain PyTorch.

This file is only for the side-by-side comparison; torch is not a dependency
of tfrobust (on these machines, `pip install torch==2.13.0` installs a CPU
build from a local wheel). It is written the way research code writes the
loop (Madry et al.'s PGD; the training loops of Rice et al. and Wong et al.),
with the choices that make PyTorch fastest where they do not change the
computation:

- the same networks as tfrobust's (tested equal in parameter count and
  FLOPs), all with bias-free convolutions padded symmetrically, BN momentum
  0.1 (Keras 0.9) and eps 1e-5, global pooling, one linear layer and the
  normalisation inside the model:
  - `resnet20`: `tfrobust.models.cifar_resnet(20)`, a 3x3 stem, three stages
    of three basic blocks (16/32/64 filters), 1x1 projection + BN shortcuts
    where the shape changes;
  - `preactresnet18`: `tfrobust.models.preact_resnet18`, a 3x3 stem with 64
    filters, four stages of two pre-activation blocks (64/128/256/512), a
    final BN - ReLU; where a block changes the shape, its shortcut is a 1x1
    convolution of the pre-activated input (Wong et al.'s PreActBlock
    convolves the raw input; the cost is the same);
  - `wrn-28-10`: `tfrobust.models.wide_resnet(28, 10)`, the same
    pre-activation blocks, a 16-filter stem and three stages of four blocks
    (160/320/640);
- the method (`--method`):
  - `pgd`: PGD-k at Linf eps 8/255, step 2.5 eps / k, uniform random start;
  - `fgsm_rs`: Wong et al.'s FGSM-RS ("Fast is better than free", arXiv
    2001.03994): a uniform start in the eps-ball, one signed-gradient step
    of 1.25 eps, projection to the ball and to [0, 1];
  in both the model is in eval mode during the attack (BN statistics not
  updated, as in tfrobust's bench), and the gradient is taken with
  `torch.autograd.grad` with respect to the perturbation only (many research
  loops call `loss.backward()`, which also computes every weight gradient at
  each attack step; that would make PyTorch slower for no reason);
- then one training pass: forward in train mode, cross-entropy, backward,
  SGD with momentum 0.9.

Four configurations: `eager` (NCHW), `channels_last` (PyTorch's fastest
float32 on these CPUs), `compile` (`torch.compile` of the model, default
inductor backend), and `channels_last_bf16`: channels_last with
`torch.autocast("cpu", dtype=torch.bfloat16)` around the attack's and the
training pass's forward (weights, the perturbation and the optimizer stay
float32), the peer of tfrobust's bfloat16 attack with "mixed_bfloat16"
training.

Usage:
    python benchmarks/torch_reference.py --config channels_last --steps 10 --batch 128
    python benchmarks/torch_reference.py --model preactresnet18 --method fgsm_rs --config channels_last_bf16
    python benchmarks/torch_reference.py --serve   # JSON-lines worker for `tfrobust bench --reference torch`
"""

import argparse
import contextlib
import json
import re
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = ("eager", "channels_last", "compile", "channels_last_bf16")
# The dtype of each configuration's passes: what a tfrobust configuration is paired with.
CONFIG_PRECISION = {"eager": "float32", "channels_last": "float32", "compile": "float32",
                    "channels_last_bf16": "bfloat16"}
METHODS = ("pgd", "fgsm_rs")
MODELS = ("resnet20", "preactresnet18", "wrn-28-10")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (option B shortcuts), [0, 1] inputs, normalisation inside."""

    def __init__(self, depth=20, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for b in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and b == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem((x - self.mean) / self.std))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class PreActBlock(nn.Module):
    """BN - ReLU - conv, twice; a 1x1 projection of the pre-activated input where the shape changes."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=1e-5, momentum=0.1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        # As tfrobust's: the shortcut convolves the pre-activated input, not x.
        shortcut = x if self.proj is None else self.proj(out)
        y = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return y + shortcut


class PreActNet(nn.Module):
    """A pre-activation residual network: stem conv, stages of `PreActBlock`s, BN - ReLU, pooling, linear.

    Args:
        stem: filters of the 3x3 stem convolution.
        stages: (filters, blocks) of each stage; every stage after the first
            starts with a stride-2 block.
        num_classes: number of logits.
    """

    def __init__(self, stem, stages, num_classes=10):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        blocks, c_in = [], stem
        for i, (c_out, n) in enumerate(stages):
            for b in range(n):
                blocks.append(PreActBlock(c_in, c_out, 2 if i > 0 and b == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in, eps=1e-5, momentum=0.1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.blocks(self.stem((x - self.mean) / self.std))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def preact_resnet18(num_classes=10):
    """PreActResNet-18 (He et al., arXiv 1603.05027), as `tfrobust.models.preact_resnet18`."""
    return PreActNet(64, [(64, 2), (128, 2), (256, 2), (512, 2)], num_classes)


def wide_resnet(depth=28, width=10, num_classes=10):
    """WRN-depth-width with ReLU (Zagoruyko & Komodakis, arXiv 1605.07146), as `tfrobust.models.wide_resnet`."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 with n >= 1. Received: depth={depth!r}")
    n = (depth - 4) // 6
    return PreActNet(16, [(16 * width, n), (32 * width, n), (64 * width, n)], num_classes)


def build(name, num_classes=10):
    """One of `MODELS` by name (any "wrn-<depth>-<width>" too)."""
    if name == "resnet20":
        return CifarResNet(20, num_classes)
    if name == "preactresnet18":
        return preact_resnet18(num_classes)
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    if m:
        return wide_resnet(int(m.group(1)), int(m.group(2)), num_classes)
    raise ValueError(f"model must be one of {MODELS}. Received: model={name!r}")


def port(layers, num_classes=10):
    """A PyTorch network computing what a tfrobust Keras classifier computes, from its layers' weights.

    `layers` maps tfrobust's layer names (`stem_conv`, `s2b1_bn1`,
    `s2b1_proj`, `logits`, `normalize`, ...) to their weights as numpy arrays:
    `kernel` (and `bias`) for convolutions and the dense layer, `gamma`,
    `beta`, `moving_mean`, `moving_variance` and `epsilon` for BatchNorm,
    `mean` and `std` for the normalisation; `architecture` names the network
    (`resnet<depth>` or `preact_resnet18`). tfrobust pads its convolutions as
    PyTorch does (`tfrobust.models.conv`), so the port is exact up to float
    rounding.

    Returns:
        The network in eval mode.

    Raises:
        ValueError: an architecture without a port here, or missing layers.
    """
    arch = layers["architecture"]
    depth = re.fullmatch(r"resnet(\d+)", arch)
    if depth:
        net = CifarResNet(int(depth.group(1)), num_classes)
    elif arch == "preact_resnet18":
        net = preact_resnet18(num_classes)
    else:
        raise ValueError(f"no PyTorch port of a {arch!r} network (resnet<depth> and preact_resnet18 have one)")

    def weights(name):
        if name not in layers:
            raise ValueError(f"the Keras classifier has no layer {name!r} for its {arch} port")
        return layers[name]

    def tensor(value):
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def conv(module, name):
        module.weight.data = tensor(np.transpose(weights(name)["kernel"], (3, 2, 0, 1)))  # HWIO -> OIHW

    def bn(module, name):
        w = weights(name)
        module.weight.data, module.bias.data = tensor(w["gamma"]), tensor(w["beta"])
        module.running_mean.data, module.running_var.data = tensor(w["moving_mean"]), tensor(w["moving_variance"])
        module.eps = float(w["epsilon"])

    norm = layers.get("normalize", {})
    # A normalisation without statistics is the identity; one value stands for every channel.
    ones = np.ones((1, net.mean.shape[1], 1, 1))
    net.mean.data = tensor(ones * np.reshape(norm.get("mean", 0.0), (1, -1, 1, 1)))
    net.std.data = tensor(ones * np.reshape(norm.get("std", 1.0), (1, -1, 1, 1)))
    blocks = iter(net.blocks)
    if isinstance(net, CifarResNet):
        conv(net.stem[0], "stem_conv")
        bn(net.stem[1], "stem_bn")
        for stage in range(3):
            for b in range((int(depth.group(1)) - 2) // 6):
                block, p = next(blocks), f"s{stage + 1}b{b + 1}_"
                conv(block.conv1, p + "conv1")
                bn(block.bn1, p + "bn1")
                conv(block.conv2, p + "conv2")
                bn(block.bn2, p + "bn2")
                if len(block.shortcut):
                    conv(block.shortcut[0], p + "proj")
                    bn(block.shortcut[1], p + "proj_bn")
    else:
        conv(net.stem, "stem_conv")
        for stage in range(4):
            for b in range(2):
                block, p = next(blocks), f"s{stage + 1}b{b + 1}_"
                bn(block.bn1, p + "bn1")
                conv(block.conv1, p + "conv1")
                bn(block.bn2, p + "bn2")
                conv(block.conv2, p + "conv2")
                if block.proj is not None:
                    conv(block.proj, p + "proj")
        bn(net.bn, "final_bn")
    dense = weights("logits")
    net.fc.weight.data, net.fc.bias.data = tensor(dense["kernel"].T), tensor(dense["bias"])
    return net.eval()


def forward_flops(model, image_shape=(3, 32, 32)):
    """2 x multiply-accumulates of the convolutions and linear layers, counted with forward hooks."""
    total = [0]

    def conv_hook(m, _, out):
        total[0] += 2 * out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, *_):
        total[0] += 2 * m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *image_shape))
    for h in hooks:
        h.remove()
    return total[0]


def pgd(model, x, y, eps, alpha, steps, autocast=None):
    """Linf PGD from a uniform random start; the caller puts the model in eval mode (no BN update).

    `autocast` is a context-manager factory around each forward and loss
    (e.g. bfloat16 autocast); the perturbation and its gradient stay float32.
    """
    autocast = autocast or contextlib.nullcontext
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        with autocast():
            loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def fgsm_rs(model, x, y, eps, alpha=None, autocast=None):
    """Wong et al.'s FGSM-RS (arXiv 2001.03994): a uniform start, one signed step of `alpha` (1.25 eps), projected."""
    return pgd(model, x, y, eps, 1.25 * eps if alpha is None else alpha, 1, autocast)


def _bfloat16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


class Runner:
    """One configuration's model, optimizer and synthetic batch; times training steps.

    Args:
        config: one of `CONFIGS`.
        batch: images per step.
        steps: k of PGD-k (unused by FGSM-RS).
        eps: the Linf radius.
        seed: seed of the weights and the synthetic batch.
        model: one of `MODELS`.
        method: "pgd" or "fgsm_rs".
    """

    def __init__(self, config, batch=128, steps=10, eps=8 / 255, seed=0, model="resnet20", method="pgd"):
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {CONFIGS}. Received: config={config!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
        torch.manual_seed(seed)
        self.config, self.steps, self.eps, self.method = config, steps, eps, method
        self.net = build(model)
        self.x = torch.rand(batch, 3, 32, 32)
        self.y = torch.randint(0, 10, (batch,))
        if config.startswith("channels_last"):
            self.net = self.net.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.model = torch.compile(self.net) if config == "compile" else self.net
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        # Only the forward passes are autocast: backward runs in the dtypes the forward chose.
        self.autocast = _bfloat16_autocast if CONFIG_PRECISION[config] == "bfloat16" else contextlib.nullcontext

    def _train(self, x):
        self.model.train()
        with self.autocast():
            loss = F.cross_entropy(self.model(x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def adv_step(self):
        self.model.eval()
        if self.method == "fgsm_rs":
            x_adv = fgsm_rs(self.model, self.x, self.y, self.eps, autocast=self.autocast)
        else:
            x_adv = pgd(self.model, self.x, self.y, self.eps, 2.5 * self.eps / self.steps, self.steps,
                        autocast=self.autocast)
        self._train(x_adv)

    def clean_step(self):
        self._train(self.x)

    def time(self, kind, iters):
        """Seconds for `iters` steps of `kind` ("adv" or "clean")."""
        fn = self.adv_step if kind == "adv" else self.clean_step
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return time.perf_counter() - start


def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss into a child across fork and exec.
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) / 1024.0 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def serve(stream_in=sys.stdin, stream_out=sys.stdout):
    """JSON-lines worker: one reply line per request line; an empty line or EOF ends the worker.

    A request is `{"config", "kind", "iters", "batch", "steps", "threads",
    "model", "method", "seed"}` (`model` defaults to "resnet20", `method` to
    "pgd"). The reply is `{"seconds", "first", "peak_rss_mb", "torch",
    "config", "model", "method"}`: `first` is true when that call built the
    runner (its time includes tracing or compiling), and the last three say
    what ran, so that the caller can check it.
    """
    runners = {}
    for line in stream_in:
        if not line.strip():
            break
        req = json.loads(line)
        torch.set_num_threads(int(req.get("threads", torch.get_num_threads())))
        key = (req["config"], req.get("batch", 128), req.get("steps", 10), req.get("model", "resnet20"),
               req.get("method", "pgd"))
        first = key not in runners
        if first:
            runners[key] = Runner(key[0], batch=key[1], steps=key[2], seed=req.get("seed", 0), model=key[3],
                                  method=key[4])
        seconds = runners[key].time(req["kind"], int(req["iters"]))
        stream_out.write(json.dumps({"seconds": seconds, "first": first, "peak_rss_mb": peak_rss_mb(),
                                     "torch": torch.__version__, "config": key[0], "model": key[3],
                                     "method": key[4]}) + "\n")
        stream_out.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", action="store_true", help="answer timing requests on stdin (JSON lines)")
    p.add_argument("--config", choices=CONFIGS, default="eager")
    p.add_argument("--model", choices=MODELS, default="resnet20")
    p.add_argument("--method", choices=METHODS, default="pgd")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--setup-only", action="store_true",
                   help="build the model and data, print the peak RSS, run no step (the baseline of the step's memory)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.serve:
        serve()
        return 0
    runner = Runner(args.config, batch=args.batch, steps=args.steps, model=args.model, method=args.method)
    if args.setup_only:
        print(json.dumps({"config": args.config, "model": args.model, "method": args.method,
                          "torch": torch.__version__, "peak_rss_mb": peak_rss_mb()}))
        return 0
    first = runner.time("adv", 1)
    runner.time("adv", 1)
    rates = sorted(args.batch * args.iters / runner.time("adv", args.iters) for _ in range(args.reps))
    print(json.dumps({"config": args.config, "model": args.model, "method": args.method,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "first_step_s": first, "adv_ips": rates[len(rates) // 2], "adv_ips_min": rates[0],
                      "adv_ips_max": rates[-1], "flops_per_image": forward_flops(runner.net),
                      "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
