"""The PyTorch peer of `tfrobust bench`: PGD-k adversarial training of CIFAR ResNet-20 in plain PyTorch.

This file is only for the side-by-side comparison; torch is not a dependency
of tfrobust (on these machines, `pip install torch==2.13.0` installs a CPU
build from a local wheel). It is written the way research code writes the
loop (Madry et al.'s PGD; the training loops of Rice et al. and Wong et al.),
with the choices that make PyTorch fastest where they do not change the
computation:

- the same network as `tfrobust.models.cifar_resnet(20)`: 3x3 stem, three
  stages of three basic blocks (16/32/64 filters), 1x1 projection + BN
  shortcuts where the shape changes, bias-free convolutions with symmetric
  padding, BN momentum 0.1 (Keras 0.9) and eps 1e-5, global pooling, one
  linear layer, normalisation inside the model (tested equal in parameter
  count and FLOPs);
- PGD-k at Linf eps 8/255, step 2.5 eps / k, uniform random start, model in
  eval mode during the attack (BN statistics not updated, as in tfrobust), and
  `torch.autograd.grad` with respect to the perturbation only (many research
  loops call `loss.backward()`, which also computes every weight gradient at
  each attack step; that would make PyTorch slower for no reason);
- then one training pass: forward in train mode, cross-entropy, backward,
  SGD with momentum 0.9.

Three configurations: `eager` (NCHW), `channels_last` (PyTorch's fastest on
these CPUs) and `compile` (`torch.compile` of the model, default inductor
backend).

Usage:
    python benchmarks/torch_reference.py --config channels_last --steps 10 --batch 128
    python benchmarks/torch_reference.py --serve   # JSON-lines worker for `tfrobust bench --reference torch`
"""

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = ("eager", "channels_last", "compile")
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


def pgd(model, x, y, eps, alpha, steps):
    """Linf PGD from a uniform random start; the model is in eval mode (no BN update)."""
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


class Runner:
    """One configuration's model, optimizer and synthetic batch; times training steps."""

    def __init__(self, config, batch=128, steps=10, eps=8 / 255, seed=0):
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {CONFIGS}. Received: config={config!r}")
        torch.manual_seed(seed)
        self.config, self.steps, self.eps = config, steps, eps
        self.net = CifarResNet()
        self.x = torch.rand(batch, 3, 32, 32)
        self.y = torch.randint(0, 10, (batch,))
        if config == "channels_last":
            self.net = self.net.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.model = torch.compile(self.net) if config == "compile" else self.net
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)

    def _train(self, x):
        self.model.train()
        loss = F.cross_entropy(self.model(x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def adv_step(self):
        self.model.eval()
        x_adv = pgd(self.model, self.x, self.y, self.eps, 2.5 * self.eps / self.steps, self.steps)
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
    """JSON-lines worker: each request `{"config", "kind", "iters", "batch", "steps", "threads"}`
    gets `{"seconds", "first", "peak_rss_mb"}`; `first` is true when that call built the runner
    (its time includes tracing or compiling). An empty line or EOF ends the worker."""
    runners = {}
    for line in stream_in:
        if not line.strip():
            break
        req = json.loads(line)
        torch.set_num_threads(int(req.get("threads", torch.get_num_threads())))
        key = (req["config"], req.get("batch", 128), req.get("steps", 10))
        first = key not in runners
        if first:
            runners[key] = Runner(req["config"], batch=key[1], steps=key[2], seed=req.get("seed", 0))
        seconds = runners[key].time(req["kind"], int(req["iters"]))
        stream_out.write(json.dumps({"seconds": seconds, "first": first, "peak_rss_mb": peak_rss_mb(),
                                     "torch": torch.__version__}) + "\n")
        stream_out.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", action="store_true", help="answer timing requests on stdin (JSON lines)")
    p.add_argument("--config", choices=CONFIGS, default="eager")
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
    runner = Runner(args.config, batch=args.batch, steps=args.steps)
    if args.setup_only:
        print(json.dumps({"config": args.config, "torch": torch.__version__, "peak_rss_mb": peak_rss_mb()}))
        return 0
    first = runner.time("adv", 1)
    runner.time("adv", 1)
    rates = sorted(args.batch * args.iters / runner.time("adv", args.iters) for _ in range(args.reps))
    print(json.dumps({"config": args.config, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "first_step_s": first, "adv_ips": rates[len(rates) // 2], "adv_ips_min": rates[0],
                      "adv_ips_max": rates[-1], "flops_per_image": forward_flops(runner.net),
                      "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
