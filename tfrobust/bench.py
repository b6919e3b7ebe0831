"""`tfrobust bench`: throughput of training steps, attacks and the input pipeline, in one process.

Every figure is a median over repetitions after a warm-up, with its spread
(min and max). FLOPs are counted analytically from the model's layers
(`model_flops`): 2 * MACs of every Conv2D / DepthwiseConv2D / Dense layer,
with normalisation, activations and pooling left out. An adversarial
training step with a k-step attack costs (2k + 3) forward-equivalents per
image: k times a forward pass and an input gradient (taken as one forward
each), then the training pass, forward plus a full backward (two forwards).
PGD-k has k steps, FGSM-RS one. MFU is the achieved model FLOP/s as a share
of the machine's peak, measured in the same run as the median speed of a
large matmul in each precision: the attack's FLOPs count against the peak of
the precision the attack computes in, the training pass's against its own.

With a `TorchReference` (`tfrobust bench --reference torch`), the PyTorch
loop of `benchmarks/torch_reference.py` is timed in a worker process in the
same run: each repetition times tfrobust's step and then each PyTorch
configuration's, so that the per-repetition ratios see the same machine state.
The fair PyTorch peers of a tfrobust configuration are those that compute in
the same precision (`fair_torch_configs`): the float32 ones for float32, and
`channels_last_bf16` for a bfloat16 attack with "mixed_bfloat16" training.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust.progress import Progress

# tfrobust's model names and the PyTorch reference's names for the same networks.
REFERENCE_MODELS = {"resnet20": "resnet20", "preact_resnet18": "preactresnet18", "wrn-28-10": "wrn-28-10"}
# The training methods the bench times, on both sides: PGD-k and Wong et al.'s FGSM-RS.
REFERENCE_METHODS = ("pgd", "fgsm_rs")
TRAIN_PRECISIONS = ("float32", "mixed_bfloat16")
ATTACK_PRECISIONS = ("float32", "bfloat16")


def model_flops(model):
    """Forward FLOPs per image: 2 x multiply-accumulates of the model's convolutions and dense layers.

    Normalisation, activations, additions and pooling are left out (about
    0.6% of ResNet-20's total by TF's graph profiler). Layers must be nodes
    of the functional graph, whose output shapes are known.

    Raises:
        ValueError: for convolutions nested inside custom layers (no known output shape).
    """
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            continue
        if isinstance(layer, keras.layers.Dense):
            total += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
            continue
        if not layer._inbound_nodes:
            raise ValueError(f"Cannot count FLOPs of {layer.name!r}: it is nested inside another layer.")
        out = layer.output.shape
        kh, kw, c_in, c_mult = (int(d) for d in layer.kernel.shape)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs_per_output, channels = kh * kw, c_in * c_mult
        else:  # kernel (kh, kw, c_in / groups, c_out)
            macs_per_output, channels = kh * kw * c_in, c_mult
        total += 2 * int(out[1]) * int(out[2]) * channels * macs_per_output
    return total


def _timed(fn, warmup, reps, label=None):
    """(first-call seconds, list of per-repetition seconds); with `label`, a progress line per call."""
    with Progress(1 + warmup + reps, label or "", unit="call", verbose="auto" if label else 0, eta=False) as progress:
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        progress.update(1)
        for _ in range(warmup):
            fn()
            progress.update(progress.done + 1)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
            progress.update(progress.done + 1)
    return first, times


def _rate(items, times):
    rates = [items / t for t in times]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "reps": len(rates)}


def matmul_peak(n=2048, reps=5, dtype=tf.float32):
    """Median FLOP/s of an n x n matmul (the machine's measured peak for `dtype`)."""
    a = tf.random.uniform([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    # No control flow to convert; autograph would warn that it cannot read a lambda's source.
    fn = tf.function(lambda: tf.matmul(a, a), autograph=False)

    def run():
        fn().numpy()

    _, times = _timed(run, 2, reps)
    return _rate(2.0 * n**3, times)


def machine():
    """The CPU, its cores and the software versions, for the JSON."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


class TorchReference:
    """A `benchmarks/torch_reference.py --serve` worker process that times PyTorch training steps on request.

    The peer runs in its own process, so that its thread pool and TF's never
    run at the same time; `run` asks it for one repetition at a time,
    alternating with tfrobust's, so that drift of the machine cancels in the
    pair-by-pair ratios.

    Args:
        script: path of torch_reference.py; None looks for
            `benchmarks/torch_reference.py` beside the tfrobust package, then
            under the working directory.
        threads: torch threads (default: the CPUs this process may use).
        command: the worker's command line (tests pass a stand-in).

    Raises:
        RuntimeError: if the worker cannot start (e.g. torch is not installed;
            `pip install torch==2.13.0` takes the local CPU wheel here).
    """

    CONFIGS = ("eager", "channels_last", "compile", "channels_last_bf16")
    # The precision each configuration computes in (the attack's and the training pass's forward alike).
    PRECISION = {"eager": "float32", "channels_last": "float32", "compile": "float32",
                 "channels_last_bf16": "bfloat16"}

    def __init__(self, script=None, threads=None, command=None):
        self.script = None
        if command is None:
            script = self.script = script or _find_reference_script()
            command = [sys.executable, script, "--serve"]
        self.threads = threads or len(os.sched_getaffinity(0))
        self.command = command
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.peak_rss_mb = 0.0
        self.version = None

    def time(self, config, kind, iters, batch_size, steps, model="resnet20", method="pgd"):
        """Seconds for `iters` PyTorch steps of `kind` ("adv" or "clean") in `config`; (seconds, first).

        `model` is the reference's name (a value of `REFERENCE_MODELS`),
        `method` one of `REFERENCE_METHODS`.

        Raises:
            RuntimeError: if the worker stopped, or says it ran another
                configuration, model or method than the one asked for.
        """
        request = {"config": config, "kind": kind, "iters": iters, "batch": batch_size, "steps": steps,
                   "threads": self.threads, "model": model, "method": method}
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            err = self._proc.stderr.read()[-2000:] if self._proc.poll() is not None else ""
            raise RuntimeError(f"The PyTorch reference worker {self.command} stopped. Is torch installed "
                               f"(pip install torch==2.13.0)? Its stderr ends:\n{err}")
        reply = json.loads(line)
        # A worker script from before the model and method fields would time ResNet-20 PGD-k whatever
        # was asked; stand-ins (no script) are checked only if they say what they ran.
        ran = {k: reply.get(k) for k in ("config", "model", "method")}
        says = self.script is not None or any(v is not None for v in ran.values())
        if says and ran != {"config": config, "model": model, "method": method}:
            raise RuntimeError(f"The PyTorch reference worker ran {ran} when asked for config={config!r}, "
                               f"model={model!r}, method={method!r}: is {self.script} out of date?")
        self.peak_rss_mb = max(self.peak_rss_mb, float(reply["peak_rss_mb"]))
        self.version = reply.get("torch", self.version)
        return float(reply["seconds"]), bool(reply["first"])

    def step_peak_rss(self, config, batch_size, steps, setup_only=False, model="resnet20", method="pgd"):
        """Peak RSS in MB of a fresh PyTorch process running only `config`'s training step; None for a stand-in.

        With `setup_only`, the process builds the model and the batch and runs
        no step: the framework's and the model's share of the figure.
        """
        if self.script is None:
            return None
        out = subprocess.run([sys.executable, self.script, "--config", config, "--batch", str(batch_size),
                              "--steps", str(steps), "--reps", "1", "--iters", "1", "--threads", str(self.threads),
                              "--model", model, "--method", method]
                             + (["--setup-only"] if setup_only else []),
                             capture_output=True, text=True, check=True)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write("\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()


def _find_reference_script(name="torch_reference.py"):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(here, "benchmarks", name), os.path.join(os.getcwd(), "benchmarks", name)):
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError(f"benchmarks/{name} not found (it is in the repository, not the package): run from the "
                       "repository's root, or pass its path (--reference-script).")


def peak_rss_mb():
    """This process's peak RSS in MB.

    Linux's `ru_maxrss` carries the parent's peak across fork and exec, so a
    small child of a large process reports the parent's size; `VmHWM` belongs
    to the process's own address space and starts afresh at exec.
    """
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) / 1024.0 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_classifier(model_name, image_shape, num_classes, train_precision="float32"):
    """`models.build` under the Keras dtype policy `train_precision`, as `experiment.build_model` does.

    Layers take the policy when they are created; the global policy is
    restored after.

    Raises:
        ValueError: for a precision not in `TRAIN_PRECISIONS`.
    """
    from tfrobust import models

    if train_precision not in TRAIN_PRECISIONS:
        raise ValueError(f"train_precision must be one of {TRAIN_PRECISIONS}. "
                         f"Received: train_precision={train_precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(train_precision)
    try:
        return models.build(model_name, image_shape, num_classes)
    finally:
        keras.config.set_dtype_policy(previous)


def training_attack(method, eps, steps, attack_precision="float32"):
    """The attack of the timed training step: PGD-k (step 2.5 eps / k) or FGSM-RS (step 1.25 eps).

    Both return their last iterate and run the model in inference mode,
    as the PyTorch reference's attacks do (eval mode).

    Raises:
        ValueError: for a method not in `REFERENCE_METHODS`.
    """
    from tfrobust.attacks import FGSM, PGD

    if method == "pgd":
        return PGD(eps, steps=steps, select="last", precision=attack_precision)
    if method == "fgsm_rs":
        return FGSM(eps, random_start=True, precision=attack_precision)
    raise ValueError(f"method must be one of {REFERENCE_METHODS}. Received: method={method!r}")


def compute_precisions(attack_precision="float32", train_precision="float32"):
    """(attack, training pass): the dtype each computes in.

    A "mixed_bfloat16" model computes in bfloat16 whatever the attack's own
    option says, so its attack does too.
    """
    if attack_precision not in ATTACK_PRECISIONS:
        raise ValueError(f"attack_precision must be one of {ATTACK_PRECISIONS}. "
                         f"Received: attack_precision={attack_precision!r}")
    if train_precision not in TRAIN_PRECISIONS:
        raise ValueError(f"train_precision must be one of {TRAIN_PRECISIONS}. "
                         f"Received: train_precision={train_precision!r}")
    train = "bfloat16" if train_precision == "mixed_bfloat16" else "float32"
    attack = "bfloat16" if "bfloat16" in (attack_precision, train) else "float32"
    return attack, train


def fair_torch_configs(attack_precision="float32", train_precision="float32"):
    """The PyTorch configurations that compute in the same precision as tfrobust's step; () if none does.

    PyTorch's configurations use one precision for the attack and the
    training pass, so a bfloat16 attack with float32 training has no exact peer.
    """
    attack, train = compute_precisions(attack_precision, train_precision)
    if attack != train:
        return ()
    return tuple(c for c in TorchReference.CONFIGS if TorchReference.PRECISION[c] == attack)


def step_name(method, steps):
    """ "PGD-k" or "FGSM-RS", for tables."""
    return "FGSM-RS" if method == "fgsm_rs" else f"PGD-{steps}"


def _attack_steps(method, steps):
    return 1 if method == "fgsm_rs" else steps


def _step_rss_child(model_name, batch_size, steps, image_shape, num_classes, iters, method="pgd",
                    attack_precision="float32", train_precision="float32"):
    """Runs in a fresh process: builds the model, runs `iters` training steps, prints peak RSS in MB.

    `iters=0` stops after building and compiling: the framework's and the model's share.
    """
    from tfrobust.training import AdversarialModel

    rng = np.random.RandomState(0)
    x = tf.constant(rng.rand(batch_size, *image_shape).astype("float32"))
    y = tf.constant(rng.randint(0, num_classes, batch_size).astype("int64"))
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (batch_size, 2)).astype("int32"))
    model = AdversarialModel(build_classifier(model_name, image_shape, num_classes, train_precision),
                             attack=training_attack(method, 8 / 255, steps, attack_precision), method=method)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    for _ in range(iters):
        model.train_on_batch({"image": x, "seed": seeds}, y)
    print(peak_rss_mb())


def step_peak_rss(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10, iters=3,
                  method="pgd", attack_precision="float32", train_precision="float32"):
    """Peak RSS in MB of a fresh process that only builds the model and runs `iters` training steps.

    The like-for-like memory figure: the harness process itself also holds
    a second model, the pipeline and the matmul. `iters=0` gives the same
    process's figure before any step (the framework and the model), so that
    the step's own memory is the difference. `method` and the precisions
    are those of `run`.
    """
    code = (f"from tfrobust import bench; bench._step_rss_child({model_name!r}, {batch_size}, {steps}, "
            f"{tuple(image_shape)!r}, {num_classes}, {iters}, {method!r}, {attack_precision!r}, "
            f"{train_precision!r})")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _check_reference_model(reference, model_name, image_shape, num_classes):
    if reference is not None and (model_name not in REFERENCE_MODELS or tuple(image_shape) != (32, 32, 3)
                                  or num_classes != 10):
        raise ValueError(f"The PyTorch reference implements {sorted(REFERENCE_MODELS)} on CIFAR-sized inputs "
                         f"only: use one of those --model names, --image-shape 32,32,3, 10 classes. "
                         f"Received: model={model_name!r}, image_shape={tuple(image_shape)}, "
                         f"num_classes={num_classes}")


def memory(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10,
           reference=None, config=None, method="pgd", attack_precision="float32", train_precision="float32"):
    """The like-for-like memory figures of the adversarial training step, each from fresh processes.

    Returns:
        `{"step_peak_rss_mb", "setup_rss_mb", "step_rss_over_setup_mb"}`: the
        peak RSS of a process that builds the model and runs the step, that of
        one that stops before the first step (framework and model), and their
        difference (the step's own memory). tfrobust's (in `attack_precision`
        and `train_precision`), or with `reference` and `config` the PyTorch
        configuration's (None values for a stand-in worker).
    """
    side = "tfrobust" if reference is None else f"PyTorch {config}"
    with Progress(2, f"bench: memory, {side}", unit="fresh process", eta=False) as progress:
        if reference is None:
            kwargs = dict(method=method, attack_precision=attack_precision, train_precision=train_precision)
            step = step_peak_rss(model_name, batch_size, steps, image_shape, num_classes, **kwargs)
            progress.update(1)
            setup = step_peak_rss(model_name, batch_size, steps, image_shape, num_classes, iters=0, **kwargs)
        else:
            ref_model = REFERENCE_MODELS[model_name]
            step = reference.step_peak_rss(config, batch_size, steps, model=ref_model, method=method)
            progress.update(1)
            setup = reference.step_peak_rss(config, batch_size, steps, setup_only=True, model=ref_model,
                                            method=method)
        progress.update(2)
    over = None if step is None else step - setup
    return {"step_peak_rss_mb": step, "setup_rss_mb": setup, "step_rss_over_setup_mb": over}


def _reference_configs(reference_configs, attack_precision, train_precision):
    """The PyTorch configurations to run: those asked for, else the fair ones, else all."""
    configs = tuple(reference_configs or fair_torch_configs(attack_precision, train_precision)
                    or TorchReference.CONFIGS)
    unknown = [c for c in configs if c not in TorchReference.CONFIGS]
    if unknown:
        raise ValueError(f"Unknown PyTorch configurations {unknown}; choose from {TorchReference.CONFIGS}.")
    return configs


def _precision_config(attack_precision, train_precision, configs):
    """The report's record of the precisions and of which PyTorch configurations are the fair peers."""
    attack, train = compute_precisions(attack_precision, train_precision)
    return {"attack_precision": attack_precision, "train_precision": train_precision,
            "attack_computes_in": attack, "training_computes_in": train,
            "torch_config_precision": {c: TorchReference.PRECISION[c] for c in configs},
            "fair_torch_configs": [c for c in fair_torch_configs(attack_precision, train_precision) if c in configs]}


def memory_report(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10,
                  reference=None, reference_configs=None, method="pgd", attack_precision="float32",
                  train_precision="float32"):
    """`memory` for tfrobust and each PyTorch configuration, in the layout of `run`'s report (no timings)."""
    _check_reference_model(reference, model_name, image_shape, num_classes)
    configs = (_reference_configs(reference_configs, attack_precision, train_precision)
               if reference is not None else ())
    results = {"tfrobust": memory(model_name, batch_size, steps, image_shape, num_classes, method=method,
                                  attack_precision=attack_precision, train_precision=train_precision)}
    for config in configs:
        results[f"torch_{config}"] = memory(model_name, batch_size, steps, reference=reference, config=config,
                                            method=method)
    return {"machine": machine(),
            "config": {"model": model_name, "batch_size": batch_size, "method": method, "pgd_steps": steps,
                       "attack_steps": _attack_steps(method, steps), "image_shape": list(image_shape),
                       "memory_only": True, **_precision_config(attack_precision, train_precision, configs)},
            "results": results}


def memory_table(report):
    """A `memory_report` as a Markdown table."""
    cfg = report["config"]
    lines = [f"{cfg['model']}, batch {cfg['batch_size']}, {step_name(cfg.get('method', 'pgd'), cfg['pgd_steps'])} "
             f"training step ({_precision_label(cfg)}); peak RSS (VmHWM) of fresh processes, MB", "",
             "| framework | before the first step | with the step | the step adds |", "|---|---|---|---|"]
    for name, r in report["results"].items():
        label = "tfrobust" if name == "tfrobust" else f"PyTorch {name[6:]}"
        cells = ["n/a" if r[k] is None else f"{r[k]:.0f}"  # a stand-in worker measures nothing
                 for k in ("setup_rss_mb", "step_peak_rss_mb", "step_rss_over_setup_mb")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pair_ratios(ours, theirs):
    """Median and spread of our images/s over theirs, repetition by repetition (times in seconds)."""
    ratios = [t / o for o, t in zip(ours, theirs)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "reps": len(ratios)}


def _precision_label(cfg):
    """How a report's tfrobust configuration computes, e.g. "float32" or "attack bfloat16, mixed_bfloat16 training"."""
    attack, train = cfg.get("attack_precision", "float32"), cfg.get("train_precision", "float32")
    if (attack, train) == ("float32", "float32"):
        return "float32"
    return f"attack {attack}, {train} training"


def _mfu(ips, attack_flops, train_flops, attack_peak, train_peak):
    """Share of the ideal time: each pass's FLOPs at the matmul peak of the precision it computes in."""
    return ips * (attack_flops / attack_peak + train_flops / train_peak)


FLOP_COUNTING = ("analytic: 2 x MACs of conv and dense layers; a k-step attack's training step = (2k + 3) forwards "
                 "(PGD-k: k, FGSM-RS: 1)")


def _synthetic_data(seed, batch_size, image_shape, num_classes):
    """Random uint8 images and labels (4 batches), and the first batch as float tensors with attack seeds."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (batch_size * 4, *image_shape)).astype("uint8")
    labels = rng.randint(0, num_classes, batch_size * 4).astype("int64")
    x = tf.constant(images[:batch_size].astype("float32") / 255.0)
    y = tf.constant(labels[:batch_size])
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (batch_size, 2)).astype("int32"))
    return images, labels, x, y, seeds


def _time_training_steps(model_name, image_shape, num_classes, train_precision, attack, method, batch, configs,
                         reference, batch_size, steps, ref_model, warmup, reps, iters):
    """Times tfrobust's clean and adversarial training steps, and the peer's, repetition by repetition.

    Returns:
        (the clean classifier, rates and first step dict, per-repetition seconds by (side, kind), first
        calls' seconds by (side, kind)).
    """
    from tfrobust.training import AdversarialModel

    results = {}

    def trainer(train_method):
        classifier = build_classifier(model_name, image_shape, num_classes, train_precision)
        model = AdversarialModel(classifier, attack=None if train_method == "standard" else attack,
                                 method=train_method)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

        def timed(n):
            start = time.perf_counter()
            for _ in range(n):
                model.train_on_batch(*batch)
            return time.perf_counter() - start

        return classifier, timed

    # Every timer maps a repetition count to seconds; the peer's are interleaved with ours.
    firsts, timers = {}, {}
    classifier, timers["tfrobust", "clean"] = trainer("standard")
    _, timers["tfrobust", "adv"] = trainer(method)
    for kind in ("clean", "adv"):
        for config in configs:
            timers[config, kind] = (lambda n, c=config, k=kind: reference.time(c, k, n, batch_size, steps,
                                                                               ref_model, method)[0])
    times = {key: [] for key in timers}
    # A wide model's step takes minutes, so the stage reports progress (no estimate: clean, adversarial,
    # first and later calls differ too much in cost for a count to predict).
    with Progress(len(timers) * (1 + warmup + reps), "bench: training steps", unit="timing", eta=False) as progress:
        for kind in ("clean", "adv"):
            firsts["tfrobust", kind] = timers["tfrobust", kind](1)  # traces the step
            progress.update(progress.done + 1)
            for config in configs:
                firsts[config, kind] = timers[config, kind](1)  # builds (and for "compile", compiles) the runner
                progress.update(progress.done + 1)
        for kind in ("clean", "adv"):
            for rep in range(warmup + reps):
                for key in [k for k in timers if k[1] == kind]:
                    seconds = timers[key](iters)
                    if rep >= warmup:
                        times[key].append(seconds)
                    progress.update(progress.done + 1)
    results["clean_ips"] = _rate(batch_size * iters, times["tfrobust", "clean"])
    results["adv_ips"] = _rate(batch_size * iters, times["tfrobust", "adv"])
    results["first_step_s"] = firsts["tfrobust", "adv"]
    return classifier, results, times, firsts


def _time_attack_and_pipeline(attack, classifier, x, y, seeds, images, labels, batch_size, seed, warmup, reps,
                              iters):
    """Images per second of the attack alone and of the training pipeline."""
    from tfrobust import data
    from tfrobust.attacks import base as attack_base

    results = {}
    attack_fn = attack_base.compiled(lambda x, y, s: attack(classifier, x, y, s))

    def attack_step():
        for _ in range(iters):
            attack_fn(x, y, seeds).numpy()

    _, attack_times = _timed(attack_step, warmup, reps, label="bench: the attack alone")
    results["attack_ips"] = _rate(batch_size * iters, attack_times)

    pipeline = data.train_dataset(images, labels, batch_size=batch_size, seed=seed, augment="fixed")
    n_batches = 20

    def consume():
        for _ in pipeline.take(n_batches):
            pass

    _, pipeline_times = _timed(consume, 1, reps)
    results["pipeline_ips"] = _rate(batch_size * n_batches, pipeline_times)
    return results


def _add_reference_results(report, configs, reference, times, firsts, peaks, attack_flops, train_flops, precision,
                           model_name, batch_size, steps, iters, ref_model, method):
    """Adds the peer's figures and the ratios against it to `report`."""
    for config in configs:
        adv = _rate(batch_size * iters, times[config, "adv"])
        clean = _rate(batch_size * iters, times[config, "clean"])
        peak = peaks[TorchReference.PRECISION[config]]["median"]
        report["results"][f"torch_{config}"] = {
            "adv_ips": adv["median"], "clean_ips": clean["median"], "precision": TorchReference.PRECISION[config],
            "first_step_s": firsts[config, "adv"],
            "mfu": _mfu(adv["median"], attack_flops, train_flops, peak, peak),
            **memory(model_name, batch_size, steps, reference=reference, config=config, method=method)}
        report["spread"][f"torch_{config}"] = {"adv_ips": adv, "clean_ips": clean}
        report["ratios"][f"adv_vs_torch_{config}"] = _pair_ratios(times["tfrobust", "adv"],
                                                                 times[config, "adv"])["median"]
        report["spread"][f"adv_vs_torch_{config}"] = _pair_ratios(times["tfrobust", "adv"], times[config, "adv"])
    best = max(configs, key=lambda c: report["results"][f"torch_{c}"]["adv_ips"])
    report["ratios"]["adv_vs_torch_best"] = report["ratios"][f"adv_vs_torch_{best}"]
    report["ratios"]["torch_best"] = best
    fair = precision["fair_torch_configs"]
    if fair:
        # The headline: against the fastest PyTorch configuration that computes in the same precision.
        best_fair = max(fair, key=lambda c: report["results"][f"torch_{c}"]["adv_ips"])
        report["ratios"]["adv_vs_torch_fair"] = report["ratios"][f"adv_vs_torch_{best_fair}"]
        report["ratios"]["torch_fair"] = best_fair
    report["reference"] = {"torch": reference.version, "threads": reference.threads, "model": ref_model,
                           "method": method, "worker_peak_rss_mb": reference.peak_rss_mb,
                           "note": "the worker's peak RSS covers all its configurations; "
                                   "each rep alternates tfrobust and every configuration"}


def _add_efficiency(results, classifier, method, steps, matmul_n, attack_dtype, train_dtype, memory_args):
    """Adds peak memory and MFU to `results`; returns (peaks, FLOPs per forward, attack steps, attack FLOPs,
    training-pass FLOPs)."""
    peaks = {"float32": matmul_peak(matmul_n), "bfloat16": matmul_peak(matmul_n, dtype=tf.bfloat16)}
    flops = model_flops(classifier)
    attack_steps = _attack_steps(method, steps)
    attack_flops, train_flops = 2 * attack_steps * flops, 3 * flops
    results.update(peak_rss_mb=peak_rss_mb(), **memory(**memory_args),
                   mfu=_mfu(results["adv_ips"]["median"], attack_flops, train_flops, peaks[attack_dtype]["median"],
                            peaks[train_dtype]["median"]),
                   clean_mfu=results["clean_ips"]["median"] * train_flops / peaks[train_dtype]["median"])
    return peaks, flops, attack_steps, attack_flops, train_flops


def run(model_name="resnet20", batch_size=128, steps=10, reps=5, warmup=2, iters=3, image_shape=(32, 32, 3),
        num_classes=10, eps=8 / 255, matmul_n=2048, seed=0, reference=None, reference_configs=None,
        attack_precision="float32", method="pgd", train_precision="float32"):
    """Measures the harness's figures; see the module docstring.

    Args:
        model_name: a `tfrobust.models` name.
        batch_size: images per step.
        steps: k of the PGD-k attack and of the PGD-k training step (unused
            by FGSM-RS, which takes one step).
        reps: timed repetitions per figure (median and spread reported).
        warmup: untimed repetitions after the first (compile) call.
        iters: steps per repetition.
        image_shape, num_classes: the synthetic data's shape.
        eps: the attack radius (Linf; step 2.5 eps / k for PGD-k, 1.25 eps
            for FGSM-RS).
        matmul_n: size of the peak-FLOP/s matmul.
        seed: seed of the synthetic data and weights.
        reference: None, or a `TorchReference` to time alternately with
            tfrobust's training steps, repetition by repetition (only the
            networks of `REFERENCE_MODELS`, on 32x32x3 inputs with 10
            classes: the peer implements those).
        reference_configs: the peer's configurations; default: those that
            compute in tfrobust's precision (`fair_torch_configs`), or all of
            `TorchReference.CONFIGS` when none does.
        attack_precision: "float32", or "bfloat16" for the attack's passes.
        method: "pgd" (PGD-k training) or "fgsm_rs" (Wong et al., arXiv 2001.03994), on both sides.
        train_precision: "float32" or "mixed_bfloat16": the Keras dtype
            policy the classifier is built under (float32 variables; with
            "mixed_bfloat16" every pass, the attack's included, computes in
            bfloat16).

    Returns:
        A dict in the layout of `benchmarks/results/*.json`.

    Raises:
        ValueError: for a model the reference lacks, an unknown method,
            precision or PyTorch configuration.
    """
    _check_reference_model(reference, model_name, image_shape, num_classes)
    attack = training_attack(method, eps, steps, attack_precision)
    attack_dtype, train_dtype = compute_precisions(attack_precision, train_precision)
    configs = (_reference_configs(reference_configs, attack_precision, train_precision)
               if reference is not None else ())
    ref_model = REFERENCE_MODELS.get(model_name)
    keras.utils.set_random_seed(seed)
    images, labels, x, y, seeds = _synthetic_data(seed, batch_size, image_shape, num_classes)
    batch = ({"image": x, "seed": seeds}, y)
    classifier, results, times, firsts = _time_training_steps(
        model_name, image_shape, num_classes, train_precision, attack, method, batch, configs, reference,
        batch_size, steps, ref_model, warmup, reps, iters)
    results.update(_time_attack_and_pipeline(attack, classifier, x, y, seeds, images, labels, batch_size, seed,
                                             warmup, reps, iters))
    peaks, flops, attack_steps, attack_flops, train_flops = _add_efficiency(
        results, classifier, method, steps, matmul_n, attack_dtype, train_dtype,
        dict(model_name=model_name, batch_size=batch_size, steps=steps, image_shape=image_shape,
             num_classes=num_classes, method=method, attack_precision=attack_precision,
             train_precision=train_precision))
    summary = {k: (v["median"] if isinstance(v, dict) else v) for k, v in results.items()}
    precision = _precision_config(attack_precision, train_precision, configs)
    mfu_against = attack_dtype if attack_dtype == train_dtype else f"attack {attack_dtype}, training {train_dtype}"
    report = {
        "machine": machine(),
        "config": {"model": model_name, "batch_size": batch_size, "method": method, "pgd_steps": steps,
                   "attack_steps": attack_steps, "reps": reps, "warmup": warmup, "iters_per_rep": iters, "xla": False,
                   "image_shape": list(image_shape), **precision},
        "flops": {"forward_per_image": flops, "adv_step_per_image": attack_flops + train_flops,
                  "attack_per_image": attack_flops, "training_pass_per_image": train_flops, "counting": FLOP_COUNTING,
                  "matmul_peak_flops": peaks["float32"], "matmul_peak_flops_bfloat16": peaks["bfloat16"],
                  "mfu_against": mfu_against},
        "results": {"tfrobust": summary},
        "spread": {k: v for k, v in results.items() if isinstance(v, dict)},
        "ratios": {"adv_over_clean_time": results["clean_ips"]["median"] / results["adv_ips"]["median"],
                   "pipeline_over_adv": results["pipeline_ips"]["median"] / results["adv_ips"]["median"]},
    }
    if configs:
        _add_reference_results(report, configs, reference, times, firsts, peaks, attack_flops, train_flops,
                               precision, model_name, batch_size, steps, iters, ref_model, method)
    return report


#: `autoattack` (standard) must evaluate at least this many times the reference's images per second.
EVAL_SPEED_TARGET = 2.0


def eval_throughput(model, dataset, eps, norm, n=100, data_dir=None, batch_size=250, seed=0,
                    reference_python=None, harness=None, reference_model="native"):
    """Images per second of `autoattack` (standard) on a model's first n test images, beside the reference's.

    tfrobust's time is `tfrobust.evaluation.evaluate` of the points, tracing
    included, without the gradient-masking checks. With `reference_python`
    (a Python that has torch and fra31/auto-attack), the AutoAttack parity
    harness (`benchmarks/autoattack_reference.py`) runs both sides on the same
    points, one after the other, and the reference's time is its
    `run_standard_evaluation` (Croce & Hein, arXiv 2003.01690).

    Args:
        model: a run directory, .keras file or exported version.
        dataset, eps, norm: the data and threat model ("linf" or "l2").
        n: the first n test images.
        data_dir: directory of the dataset's npz files.
        batch_size, seed: of both sides.
        reference_python: the Python that runs the reference, or None for
            tfrobust alone.
        harness: path of autoattack_reference.py (default: the repository's).
        reference_model: "native": the reference attacks the model's weights
            ported to the same network in PyTorch, as its users run it (the
            fair peer; ResNets and PreActResNet-18); "adapter": the TensorFlow
            model behind a torch adapter (any model; the two sides then share
            the model's arithmetic).

    Returns:
        A JSON-ready report: `config`, `machine`, `tfrobust` (seconds, img/s,
        clean and robust accuracy) and, with a reference, `reference` (the
        same) and `ratio` (tfrobust's img/s over the reference's), with the
        harness's per-point `comparison`.
    """
    config = {"model": model, "dataset": dataset, "eps": float(eps), "norm": norm, "n": int(n),
              "batch_size": int(batch_size), "seed": int(seed), "attack": "autoattack (standard)"}
    if reference_python is not None:
        config["reference_model"] = reference_model
    report = {"config": config, "machine": machine()}
    if reference_python is None:
        from tfrobust import data as data_lib
        from tfrobust.attacks import registry
        from tfrobust.evaluation import robustness
        from tfrobust.experiment import load_classifier

        classifier, _ = load_classifier(model)
        test = data_lib.load(dataset, "test", data_dir=data_dir)
        start = time.perf_counter()
        result = robustness.evaluate(classifier, test.images[:n], test.labels[:n],
                                     [registry.build("autoattack", eps, norm)], batch_size=batch_size, seed=seed,
                                     worst_case=False, verbose=0, checks=False)
        seconds = time.perf_counter() - start
        report["tfrobust"] = _eval_side(seconds, len(result.clean_correct), result.clean_accuracy,
                                        result.results[0].accuracy)
        return report
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "aaref.json")
        command = [sys.executable, harness or _find_reference_script("autoattack_reference.py"), "--model", model,
                   "--dataset", dataset, "--eps", repr(float(eps)), "--norm", {"linf": "Linf", "l2": "L2"}[norm],
                   "--n", str(n), "--batch-size", str(batch_size), "--seed", str(seed),
                   "--reference-python", reference_python, "--reference-model", reference_model, "--json", out]
        if data_dir:
            command += ["--data-dir", data_dir]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "nothing").splitlines()[-1]
            raise RuntimeError(f"The AutoAttack harness failed (exit {proc.returncode}); is torch with the "
                               f"reference installed for {reference_python}? Its last line: {last}")
        with open(out) as f:
            run_ = json.load(f)
    c = run_["comparison"]
    for side in ("tfrobust", "reference"):
        clean = run_["clean"][side]
        report[side] = _eval_side(c[f"{side}_seconds"], c["n"], sum(clean) / len(clean), c[f"{side}_accuracy"])
    report["ratio"] = report["tfrobust"]["img_per_s"] / report["reference"]["img_per_s"]
    report["comparison"] = c
    report["machine"] = run_["machine"]
    return report


def _eval_side(seconds, n, clean, robust):
    return {"seconds": float(seconds), "img_per_s": n / float(seconds), "clean_accuracy": float(clean),
            "robust_accuracy": float(robust)}


def eval_table(report):
    """An `eval_throughput` report as text.

    Returns:
        str: a Markdown table of img/s, seconds, clean and robust accuracy per
        side, and with a reference, the ratio against the target.
    """
    cfg = report["config"]
    lines = [f"autoattack (standard) on the first {cfg['n']} test images of {cfg['dataset']}, {cfg['norm']} "
             f"eps={cfg['eps']:.4g}, {cfg['model']}; {report['machine']['cores']} cores", "",
             "| side | img/s | seconds | clean | robust |", "|---|---|---|---|---|"]
    reference = {"native": "reference AutoAttack (PyTorch port)", "adapter": "reference AutoAttack (TF adapter)"}.get(
        cfg.get("reference_model"), "reference AutoAttack")
    for side, label in (("tfrobust", "tfrobust autoattack"), ("reference", reference)):
        if side in report:
            r = report[side]
            lines.append(f"| {label} | {r['img_per_s']:.2f} | {r['seconds']:.0f} | {100 * r['clean_accuracy']:.1f}% | "
                         f"{100 * r['robust_accuracy']:.1f}% |")
    if "ratio" in report:
        accuracy = report["comparison"]["targets"]["accuracy"]  # the harness's rule, judged by the harness
        met = "met" if report["ratio"] >= EVAL_SPEED_TARGET and accuracy["holds"] else "not met"
        lines += ["", f"tfrobust / reference img/s: {report['ratio']:.2f}x (target: at least {EVAL_SPEED_TARGET:g}x, "
                      f"and {accuracy['rule']}: {met})"]
    return "\n".join(lines)


def table(report):
    """The report as a Markdown table."""
    r = report["results"]["tfrobust"]
    s = report["spread"]
    cfg = report["config"]
    name = step_name(cfg.get("method", "pgd"), cfg["pgd_steps"])
    attack_name = "FGSM-RS attack" if cfg.get("method") == "fgsm_rs" else f"PGD-{cfg['pgd_steps']} attack"
    peaks = report["flops"]
    rows = [
        ("clean training step", f"{r['clean_ips']:.1f} img/s [{s['clean_ips']['min']:.1f}, {s['clean_ips']['max']:.1f}]"),
        (f"{name} training step", f"{r['adv_ips']:.1f} img/s [{s['adv_ips']['min']:.1f}, {s['adv_ips']['max']:.1f}]"),
        (f"{attack_name} alone", f"{r['attack_ips']:.1f} img/s"),
        ("augmentation pipeline", f"{r['pipeline_ips']:.0f} img/s"),
        ("first training step (trace)", f"{r['first_step_s']:.1f} s"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB (harness process); {r['step_peak_rss_mb']:.0f} MB "
                     f"(a fresh process running only the {name} training step)"),
        ("of which before the first step", f"{r['setup_rss_mb']:.0f} MB (framework and model); the step adds "
                                           f"{r['step_rss_over_setup_mb']:.0f} MB"),
        (f"MFU of the {name} step", f"{100 * r['mfu']:.1f}% against the {peaks.get('mfu_against', 'float32')} "
                                    f"matmul peak (float32 {peaks['matmul_peak_flops']['median'] / 1e9:.0f}, "
                                    f"bfloat16 {peaks['matmul_peak_flops_bfloat16']['median'] / 1e9:.0f} GFLOP/s, "
                                    "same run)"),
    ]
    fair = cfg.get("fair_torch_configs", [])
    for key in [k for k in report["results"] if k.startswith("torch_")]:
        t = report["results"][key]
        label = f"PyTorch {key[6:]}" + (" (fair peer)" if key[6:] in fair else "")
        ratio = report["ratios"][f"adv_vs_{key}"]
        sp = report["spread"][f"adv_vs_{key}"]
        rows.append((f"{label}: {name} step", f"{t['adv_ips']:.1f} img/s, MFU {100 * t['mfu']:.1f}% "
                     f"({t.get('precision', 'float32')} peak); tfrobust / it = {ratio:.2f}x "
                     f"[{sp['min']:.2f}, {sp['max']:.2f}] pair by pair"))
        rows.append((f"{label}: clean step, first step", f"{t['clean_ips']:.1f} img/s, {t['first_step_s']:.1f} s"))
        if t.get("step_peak_rss_mb") is not None:
            rows.append((f"{label}: peak RSS of the training step alone",
                         f"{t['step_peak_rss_mb']:.0f} MB; {t['setup_rss_mb']:.0f} MB before the first step, "
                         f"the step adds {t['step_rss_over_setup_mb']:.0f} MB"))
    if "reference" in report:
        rows.append(("PyTorch worker peak RSS", f"{report['reference']['worker_peak_rss_mb']:.0f} MB "
                                                "(all its configurations)"))
    if "reference" in report and not fair:
        rows.append(("fair PyTorch peer", "none: no configuration run computes the attack and the training "
                                          "pass in tfrobust's precisions"))
    lines = [f"{cfg['model']}, batch {cfg['batch_size']}, {name} training, {_precision_label(cfg)}, "
             f"{report['machine']['cores']} cores ({report['machine']['cpu']}); median [min, max] of "
             f"{cfg['reps']} repetitions", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    mfus = [r["mfu"]] + [report["results"][k]["mfu"] for k in report["results"] if k.startswith("torch_")]
    if max(mfus) > 1:
        lines += ["", "An MFU above 100% means the step outran the matmul that measured the peak: that matmul "
                      "underestimates this CPU's peak, so compare the ratios, not the MFU figures."]
    return "\n".join(lines)


__all__ = ["ATTACK_PRECISIONS", "REFERENCE_METHODS", "REFERENCE_MODELS", "TRAIN_PRECISIONS", "TorchReference",
           "EVAL_SPEED_TARGET", "build_classifier", "compute_precisions", "eval_table", "eval_throughput",
           "fair_torch_configs", "machine", "matmul_peak", "memory",
           "memory_report", "memory_table", "model_flops", "peak_rss_mb", "run", "step_name", "table",
           "training_attack"]
