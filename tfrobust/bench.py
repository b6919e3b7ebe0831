"""`tfrobust bench`: throughput of training steps, attacks and the input pipeline, in one process.

Every figure is a median over repetitions after a warm-up, with its spread
(min and max). FLOPs are counted analytically from the model's layers
(`model_flops`): 2 * MACs of every Conv2D / DepthwiseConv2D / Dense layer,
with normalisation, activations and pooling left out. A PGD-k training step
costs (2k + 3) forward-equivalents per image: k times a forward pass and an
input gradient (taken as one forward each), then the training pass, forward
plus a full backward (two forwards). MFU is the achieved model FLOP/s as a
share of the machine's float32 peak, measured in the same run as the median
speed of a large matmul.

With a `TorchReference` (`tfrobust bench --reference torch`), the PyTorch
loop of `benchmarks/torch_reference.py` is timed in a worker process in the
same run: each repetition times tfrobust's step and then each PyTorch
configuration's, so that the per-repetition ratios see the same machine state.
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


def _timed(fn, warmup, reps):
    """(first-call seconds, list of per-repetition seconds)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, times


def _rate(items, times):
    rates = [items / t for t in times]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "reps": len(rates)}


def matmul_peak(n=2048, reps=5, dtype=tf.float32):
    """Median FLOP/s of an n x n matmul (the machine's measured peak for `dtype`)."""
    a = tf.random.uniform([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    fn = tf.function(lambda: tf.matmul(a, a))

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

    CONFIGS = ("eager", "channels_last", "compile")

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

    def time(self, config, kind, iters, batch_size, steps):
        """Seconds for `iters` PyTorch steps of `kind` ("adv" or "clean") in `config`; (seconds, first)."""
        request = {"config": config, "kind": kind, "iters": iters, "batch": batch_size, "steps": steps,
                   "threads": self.threads}
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
        self.peak_rss_mb = max(self.peak_rss_mb, float(reply["peak_rss_mb"]))
        self.version = reply.get("torch", self.version)
        return float(reply["seconds"]), bool(reply["first"])

    def step_peak_rss(self, config, batch_size, steps, setup_only=False):
        """Peak RSS in MB of a fresh PyTorch process running only `config`'s training step; None for a stand-in.

        With `setup_only`, the process builds the model and the batch and runs
        no step: the framework's and the model's share of the figure.
        """
        if self.script is None:
            return None
        out = subprocess.run([sys.executable, self.script, "--config", config, "--batch", str(batch_size),
                              "--steps", str(steps), "--reps", "1", "--iters", "1", "--threads", str(self.threads)]
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


def _find_reference_script():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(here, "benchmarks", "torch_reference.py"),
                      os.path.join(os.getcwd(), "benchmarks", "torch_reference.py")):
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("benchmarks/torch_reference.py not found; pass its path (--reference-script).")


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


def _step_rss_child(model_name, batch_size, steps, image_shape, num_classes, iters):
    """Runs in a fresh process: builds the model, runs `iters` PGD-k training steps, prints peak RSS in MB.

    `iters=0` stops after building and compiling: the framework's and the model's share.
    """
    from tfrobust import models
    from tfrobust.attacks import PGD
    from tfrobust.training import AdversarialModel

    rng = np.random.RandomState(0)
    x = tf.constant(rng.rand(batch_size, *image_shape).astype("float32"))
    y = tf.constant(rng.randint(0, num_classes, batch_size).astype("int64"))
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (batch_size, 2)).astype("int32"))
    model = AdversarialModel(models.build(model_name, image_shape, num_classes),
                             attack=PGD(8 / 255, steps=steps, select="last"), method="pgd")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    for _ in range(iters):
        model.train_on_batch({"image": x, "seed": seeds}, y)
    print(peak_rss_mb())


def step_peak_rss(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10, iters=3):
    """Peak RSS in MB of a fresh process that only builds the model and runs `iters` PGD-k training steps.

    The like-for-like memory figure: the harness process itself also holds
    a second model, the pipeline and the matmul. `iters=0` gives the same
    process's figure before any step (the framework and the model), so that
    the step's own memory is the difference.
    """
    code = (f"from tfrobust import bench; bench._step_rss_child({model_name!r}, {batch_size}, {steps}, "
            f"{tuple(image_shape)!r}, {num_classes}, {iters})")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _check_reference_model(reference, model_name, image_shape, num_classes):
    if reference is not None and (model_name != "resnet20" or tuple(image_shape) != (32, 32, 3) or num_classes != 10):
        raise ValueError("The PyTorch reference implements CIFAR ResNet-20 only: use --model resnet20, "
                         f"--image-shape 32,32,3, 10 classes. Received: model={model_name!r}, "
                         f"image_shape={tuple(image_shape)}, num_classes={num_classes}")


def memory(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10,
           reference=None, config=None):
    """The like-for-like memory figures of the PGD-k training step, each from fresh processes.

    Returns:
        `{"step_peak_rss_mb", "setup_rss_mb", "step_rss_over_setup_mb"}`: the
        peak RSS of a process that builds the model and runs the step, that of
        one that stops before the first step (framework and model), and their
        difference (the step's own memory). tfrobust's, or with `reference`
        and `config` the PyTorch configuration's (None values for a stand-in
        worker).
    """
    if reference is None:
        step = step_peak_rss(model_name, batch_size, steps, image_shape, num_classes)
        setup = step_peak_rss(model_name, batch_size, steps, image_shape, num_classes, iters=0)
    else:
        step = reference.step_peak_rss(config, batch_size, steps)
        setup = reference.step_peak_rss(config, batch_size, steps, setup_only=True)
    over = None if step is None else step - setup
    return {"step_peak_rss_mb": step, "setup_rss_mb": setup, "step_rss_over_setup_mb": over}


def memory_report(model_name="resnet20", batch_size=128, steps=10, image_shape=(32, 32, 3), num_classes=10,
                  reference=None, reference_configs=None):
    """`memory` for tfrobust and each PyTorch configuration, in the layout of `run`'s report (no timings)."""
    _check_reference_model(reference, model_name, image_shape, num_classes)
    results = {"tfrobust": memory(model_name, batch_size, steps, image_shape, num_classes)}
    for config in (reference_configs or TorchReference.CONFIGS) if reference is not None else ():
        results[f"torch_{config}"] = memory(model_name, batch_size, steps, reference=reference, config=config)
    return {"machine": machine(), "config": {"model": model_name, "batch_size": batch_size, "pgd_steps": steps,
                                             "image_shape": list(image_shape), "memory_only": True},
            "results": results}


def memory_table(report):
    """A `memory_report` as a Markdown table."""
    lines = [f"{report['config']['model']}, batch {report['config']['batch_size']}, PGD-{report['config']['pgd_steps']} "
             "training step; peak RSS (VmHWM) of fresh processes, MB", "",
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


def run(model_name="resnet20", batch_size=128, steps=10, reps=5, warmup=2, iters=3, image_shape=(32, 32, 3),
        num_classes=10, eps=8 / 255, matmul_n=2048, seed=0, reference=None, reference_configs=None,
        attack_precision="float32"):
    """Measures the harness's figures; see the module docstring.

    Args:
        model_name: a `tfrobust.models` name.
        batch_size: images per step.
        steps: k of the PGD-k attack and of the PGD-k training step.
        reps: timed repetitions per figure (median and spread reported).
        warmup: untimed repetitions after the first (compile) call.
        iters: steps per repetition.
        image_shape, num_classes: the synthetic data's shape.
        eps: the attack radius (Linf, step 2.5 eps / k).
        matmul_n: size of the peak-FLOP/s matmul.
        seed: seed of the synthetic data and weights.
        reference: None, or a `TorchReference` to time alternately with
            tfrobust's training steps, repetition by repetition (ResNet-20 on
            32x32x3 only: the peer implements that network).
        reference_configs: the peer's configurations (default: all of
            `TorchReference.CONFIGS`).
        attack_precision: "float32", or "bfloat16" for the attack's passes
            (the training pass stays float32); MFU is then taken against the
            bfloat16 matmul peak, measured in the same run.

    Returns:
        A dict in the layout of `benchmarks/results/*.json`.
    """
    from tfrobust import data, models
    from tfrobust.attacks import PGD
    from tfrobust.training import AdversarialModel

    _check_reference_model(reference, model_name, image_shape, num_classes)
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (batch_size * 4, *image_shape)).astype("uint8")
    labels = rng.randint(0, num_classes, batch_size * 4).astype("int64")
    x = tf.constant(images[:batch_size].astype("float32") / 255.0)
    y = tf.constant(labels[:batch_size])
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (batch_size, 2)).astype("int32"))
    batch = ({"image": x, "seed": seeds}, y)

    attack = PGD(eps, steps=steps, select="last", precision=attack_precision)
    results = {}

    def trainer(method):
        classifier = models.build(model_name, image_shape, num_classes)
        model = AdversarialModel(classifier, attack=None if method == "standard" else attack, method=method)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

        def timed(n):
            start = time.perf_counter()
            for _ in range(n):
                model.train_on_batch(*batch)
            return time.perf_counter() - start

        return classifier, timed

    # Every timer maps a repetition count to seconds; the peer's are interleaved with ours.
    configs = tuple(reference_configs or TorchReference.CONFIGS) if reference is not None else ()
    unknown = [c for c in configs if c not in TorchReference.CONFIGS]
    if unknown:
        raise ValueError(f"Unknown PyTorch configurations {unknown}; choose from {TorchReference.CONFIGS}.")
    firsts, timers = {}, {}
    classifier, timers["tfrobust", "clean"] = trainer("standard")
    _, timers["tfrobust", "adv"] = trainer("pgd")
    for kind in ("clean", "adv"):
        firsts["tfrobust", kind] = timers["tfrobust", kind](1)  # traces the step
        for config in configs:
            timers[config, kind] = (lambda n, c=config, k=kind: reference.time(c, k, n, batch_size, steps)[0])
            firsts[config, kind] = timers[config, kind](1)  # builds (and for "compile", compiles) the runner
    times = {key: [] for key in timers}
    for kind in ("clean", "adv"):
        for _ in range(warmup):
            for key in [k for k in timers if k[1] == kind]:
                timers[key](iters)
        for _ in range(reps):
            for key in [k for k in timers if k[1] == kind]:
                times[key].append(timers[key](iters))
    results["clean_ips"] = _rate(batch_size * iters, times["tfrobust", "clean"])
    results["adv_ips"] = _rate(batch_size * iters, times["tfrobust", "adv"])
    results["first_step_s"] = firsts["tfrobust", "adv"]

    attack_fn = tf.function(lambda x, y, s: attack(classifier, x, y, s))

    def attack_step():
        for _ in range(iters):
            attack_fn(x, y, seeds).numpy()

    _, attack_times = _timed(attack_step, warmup, reps)
    results["attack_ips"] = _rate(batch_size * iters, attack_times)

    pipeline = data.train_dataset(images, labels, batch_size=batch_size, seed=seed, augment="fixed")
    n_batches = 20

    def consume():
        for _ in pipeline.take(n_batches):
            pass

    _, pipeline_times = _timed(consume, 1, reps)
    results["pipeline_ips"] = _rate(batch_size * n_batches, pipeline_times)

    peak = matmul_peak(matmul_n)
    peak_bf16 = matmul_peak(matmul_n, dtype=tf.bfloat16)
    if attack_precision == "bfloat16":
        peak = peak_bf16
    flops = model_flops(classifier)
    adv_flops_per_image = (2 * steps + 3) * flops
    results["peak_rss_mb"] = peak_rss_mb()
    results.update(memory(model_name, batch_size, steps, image_shape, num_classes))
    results["mfu"] = results["adv_ips"]["median"] * adv_flops_per_image / peak["median"]
    results["clean_mfu"] = results["clean_ips"]["median"] * 3 * flops / peak["median"]
    summary = {k: (v["median"] if isinstance(v, dict) else v) for k, v in results.items()}
    report = {
        "machine": machine(),
        "config": {"model": model_name, "batch_size": batch_size, "pgd_steps": steps, "reps": reps,
                   "warmup": warmup, "iters_per_rep": iters, "dtype": "float32", "xla": False,
                   "attack_precision": attack_precision, "image_shape": list(image_shape)},
        "flops": {"forward_per_image": flops, "adv_step_per_image": adv_flops_per_image,
                  "counting": "analytic: 2 x MACs of conv and dense layers; PGD-k step = (2k + 3) forwards",
                  "matmul_peak_flops": peak, "matmul_peak_flops_bfloat16": peak_bf16,
                  "mfu_against": "bfloat16" if attack_precision == "bfloat16" else "float32"},
        "results": {"tfrobust": summary},
        "spread": {k: v for k, v in results.items() if isinstance(v, dict)},
        "ratios": {"adv_over_clean_time": results["clean_ips"]["median"] / results["adv_ips"]["median"],
                   "pipeline_over_adv": results["pipeline_ips"]["median"] / results["adv_ips"]["median"]},
    }
    if configs:
        for config in configs:
            adv = _rate(batch_size * iters, times[config, "adv"])
            clean = _rate(batch_size * iters, times[config, "clean"])
            report["results"][f"torch_{config}"] = {
                "adv_ips": adv["median"], "clean_ips": clean["median"],
                "first_step_s": firsts[config, "adv"], "mfu": adv["median"] * adv_flops_per_image / peak["median"],
                **memory(model_name, batch_size, steps, reference=reference, config=config)}
            report["spread"][f"torch_{config}"] = {"adv_ips": adv, "clean_ips": clean}
            report["ratios"][f"adv_vs_torch_{config}"] = _pair_ratios(times["tfrobust", "adv"],
                                                                     times[config, "adv"])["median"]
            report["spread"][f"adv_vs_torch_{config}"] = _pair_ratios(times["tfrobust", "adv"], times[config, "adv"])
        best = max(configs, key=lambda c: report["results"][f"torch_{c}"]["adv_ips"])
        report["ratios"]["adv_vs_torch_best"] = report["ratios"][f"adv_vs_torch_{best}"]
        report["ratios"]["torch_best"] = best
        report["reference"] = {"torch": reference.version, "threads": reference.threads,
                               "worker_peak_rss_mb": reference.peak_rss_mb,
                               "note": "the worker's peak RSS covers all its configurations; "
                                       "each rep alternates tfrobust and every configuration"}
    return report


def table(report):
    """The report as a Markdown table."""
    r = report["results"]["tfrobust"]
    s = report["spread"]
    cfg = report["config"]
    rows = [
        ("clean training step", f"{r['clean_ips']:.1f} img/s [{s['clean_ips']['min']:.1f}, {s['clean_ips']['max']:.1f}]"),
        (f"PGD-{cfg['pgd_steps']} training step", f"{r['adv_ips']:.1f} img/s [{s['adv_ips']['min']:.1f}, "
                                                 f"{s['adv_ips']['max']:.1f}]"),
        (f"PGD-{cfg['pgd_steps']} attack alone", f"{r['attack_ips']:.1f} img/s"),
        ("augmentation pipeline", f"{r['pipeline_ips']:.0f} img/s"),
        ("first training step (trace)", f"{r['first_step_s']:.1f} s"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB (harness process); {r['step_peak_rss_mb']:.0f} MB "
                     "(a fresh process running only the PGD training step)"),
        ("of which before the first step", f"{r['setup_rss_mb']:.0f} MB (framework and model); the step adds "
                                           f"{r['step_rss_over_setup_mb']:.0f} MB"),
        ("MFU of the PGD step", f"{100 * r['mfu']:.1f}% of {report['flops']['matmul_peak_flops']['median'] / 1e9:.0f} "
                                f"GFLOP/s ({report['flops'].get('mfu_against', 'float32')} matmul, same run)"),
    ]
    for name in [k for k in report["results"] if k.startswith("torch_")]:
        t = report["results"][name]
        ratio = report["ratios"][f"adv_vs_{name}"]
        sp = report["spread"][f"adv_vs_{name}"]
        rows.append((f"PyTorch {name[6:]}: PGD-{cfg['pgd_steps']} step", f"{t['adv_ips']:.1f} img/s; tfrobust / it = "
                     f"{ratio:.2f}x [{sp['min']:.2f}, {sp['max']:.2f}] pair by pair"))
        rows.append((f"PyTorch {name[6:]}: clean step, first step", f"{t['clean_ips']:.1f} img/s, {t['first_step_s']:.1f} s"))
        if t.get("step_peak_rss_mb") is not None:
            rows.append((f"PyTorch {name[6:]}: peak RSS of the training step alone",
                         f"{t['step_peak_rss_mb']:.0f} MB; {t['setup_rss_mb']:.0f} MB before the first step, "
                         f"the step adds {t['step_rss_over_setup_mb']:.0f} MB"))
    if "reference" in report:
        rows.append(("PyTorch worker peak RSS", f"{report['reference']['worker_peak_rss_mb']:.0f} MB "
                                                "(all its configurations)"))
    lines = [f"{cfg['model']}, batch {cfg['batch_size']}, float32 (attack {cfg.get('attack_precision', 'float32')}), {report['machine']['cores']} cores "
             f"({report['machine']['cpu']}); median [min, max] of {cfg['reps']} repetitions", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


__all__ = ["TorchReference", "machine", "matmul_peak", "memory", "memory_report", "memory_table", "model_flops",
           "peak_rss_mb", "run", "table"]
