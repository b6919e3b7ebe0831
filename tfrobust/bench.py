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
"""

import os
import platform
import resource
import statistics
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


def run(model_name="resnet20", batch_size=128, steps=10, reps=5, warmup=2, iters=3, image_shape=(32, 32, 3),
        num_classes=10, eps=8 / 255, matmul_n=2048, seed=0):
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

    Returns:
        A dict in the layout of `benchmarks/results/*.json`.
    """
    from tfrobust import data, models
    from tfrobust.attacks import PGD
    from tfrobust.training import AdversarialModel

    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (batch_size * 4, *image_shape)).astype("uint8")
    labels = rng.randint(0, num_classes, batch_size * 4).astype("int64")
    x = tf.constant(images[:batch_size].astype("float32") / 255.0)
    y = tf.constant(labels[:batch_size])
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (batch_size, 2)).astype("int32"))
    batch = ({"image": x, "seed": seeds}, y)

    attack = PGD(eps, steps=steps, select="last")
    results = {}

    def train_figures(method):
        classifier = models.build(model_name, image_shape, num_classes)
        model = AdversarialModel(classifier, attack=None if method == "standard" else attack, method=method)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

        def step():
            for _ in range(iters):
                model.train_on_batch(*batch)

        start = time.perf_counter()
        model.train_on_batch(*batch)  # traces the step
        first = time.perf_counter() - start
        _, times = _timed(step, warmup, reps)
        return classifier, first, _rate(batch_size * iters, times)

    classifier, first_clean, results["clean_ips"] = train_figures("standard")
    _, first_adv, results["adv_ips"] = train_figures("pgd")
    results["first_step_s"] = first_adv

    attack_fn = tf.function(lambda x, y, s: attack(classifier, x, y, s))

    def attack_step():
        for _ in range(iters):
            attack_fn(x, y, seeds).numpy()

    _, times = _timed(attack_step, warmup, reps)
    results["attack_ips"] = _rate(batch_size * iters, times)

    pipeline = data.train_dataset(images, labels, batch_size=batch_size, seed=seed, augment="fixed")
    n_batches = 20

    def consume():
        for _ in pipeline.take(n_batches):
            pass

    _, times = _timed(consume, 1, reps)
    results["pipeline_ips"] = _rate(batch_size * n_batches, times)

    peak = matmul_peak(matmul_n)
    flops = model_flops(classifier)
    adv_flops_per_image = (2 * steps + 3) * flops
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results["mfu"] = results["adv_ips"]["median"] * adv_flops_per_image / peak["median"]
    results["clean_mfu"] = results["clean_ips"]["median"] * 3 * flops / peak["median"]
    summary = {k: (v["median"] if isinstance(v, dict) else v) for k, v in results.items()}
    return {
        "machine": machine(),
        "config": {"model": model_name, "batch_size": batch_size, "pgd_steps": steps, "reps": reps,
                   "warmup": warmup, "iters_per_rep": iters, "dtype": "float32", "xla": False,
                   "image_shape": list(image_shape)},
        "flops": {"forward_per_image": flops, "adv_step_per_image": adv_flops_per_image,
                  "counting": "analytic: 2 x MACs of conv and dense layers; PGD-k step = (2k + 3) forwards",
                  "matmul_peak_flops": peak},
        "results": {"tfrobust": summary},
        "spread": {k: v for k, v in results.items() if isinstance(v, dict)},
        "ratios": {"adv_over_clean_time": results["clean_ips"]["median"] / results["adv_ips"]["median"],
                   "pipeline_over_adv": results["pipeline_ips"]["median"] / results["adv_ips"]["median"]},
    }


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
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB"),
        ("MFU of the PGD step", f"{100 * r['mfu']:.1f}% of {report['flops']['matmul_peak_flops']['median'] / 1e9:.0f} "
                                "GFLOP/s (float32 matmul, same run)"),
    ]
    lines = [f"{cfg['model']}, batch {cfg['batch_size']}, float32, {report['machine']['cores']} cores "
             f"({report['machine']['cpu']}); median [min, max] of {cfg['reps']} repetitions", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


__all__ = ["machine", "matmul_peak", "model_flops", "run", "table"]
