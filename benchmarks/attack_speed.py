"""Attack speed side by side: PGD vs APGD-CE per iteration, and autoattack in images/s.

Runs both attacks alternately in one process on the same model, batch and
iterations, so that the machine's drift cancels out in the ratio; reports
medians and spreads over the repetitions, and the `autoattack` ensemble's
throughput on a robust model (the cascade's cost depends on how many points
survive each stage, so it is measured on the shipped robust MNIST model).

Usage:
    python benchmarks/attack_speed.py [--model saved_models/mnist_pgd_linf/3]
        [--batch 250] [--steps 50] [--reps 5] [--n-autoattack 250]
        [--json benchmarks/results/attack_speed.json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np


def _machine():
    import keras
    import tensorflow as tf

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model path (default: newest shipped MNIST export)")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--n-autoattack", type=int, default=250)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tfrobust import data, experiment
    from tfrobust.attacks import APGD, PGD
    from tfrobust.attacks.autoattack import AutoAttack
    from tfrobust.evaluation import evaluate
    from tfrobust.export import saved_model as export_lib

    path = args.model
    if path is None:
        base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models")
        path = os.path.join(base, "mnist_pgd_linf", str(export_lib.latest_version(base, "mnist_pgd_linf")))
    classifier, _ = experiment.load_classifier(path)
    test = data.load("mnist", "test")
    x = tf.constant(test.images[: args.batch].astype("float32") / 255.0)
    y = tf.constant(test.labels[: args.batch])
    seeds = tf.constant(np.arange(2 * args.batch, dtype=np.int32).reshape(-1, 2))

    pgd = PGD(args.eps, steps=args.steps, step_size=0.01)
    apgd = APGD(args.eps, steps=args.steps)
    runners = {
        a.name: tf.function(lambda x, y, s, a=a: a(classifier, x, y, s)) for a in (pgd, apgd)
    }
    first = {name: _timed(lambda r=r: r(x, y, seeds).numpy()) for name, r in runners.items()}
    times = {name: [] for name in runners}
    for _ in range(args.reps):
        for name, run in runners.items():  # alternate, so drift hits both alike
            times[name].append(_timed(lambda r=run: r(x, y, seeds).numpy()))
    per_iter = {name: [t / args.steps for t in ts] for name, ts in times.items()}
    ratios = [a / p for a, p in zip(per_iter["apgd-ce"], per_iter["pgd"])]

    n = args.n_autoattack
    start = time.perf_counter()
    report = evaluate(classifier, test.images[:n], test.labels[:n], [AutoAttack(args.eps)],
                      batch_size=n, verbose=0, checks=False)
    aa_s = time.perf_counter() - start

    result = {
        "command": "python benchmarks/attack_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _machine(),
        "model": path,
        "batch": args.batch,
        "steps": args.steps,
        "reps": args.reps,
        "first_call_s": first,
        "per_iteration_ms": {
            name: {"median": 1e3 * statistics.median(v), "min": 1e3 * min(v), "max": 1e3 * max(v)}
            for name, v in per_iter.items()
        },
        "apgd_over_pgd_time_per_iteration": {
            "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)
        },
        "autoattack": {
            "n": n,
            "seconds": aa_s,
            "images_per_s": n / aa_s,
            "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": report.results[0].accuracy,
            "after": report.results[0].extra.get("after"),
            "note": "one batch of n, compile included; the cascade attacks only surviving points",
        },
    }
    rows = [
        ("PGD, ms / iteration (median)", f"{result['per_iteration_ms']['pgd']['median']:.2f}"),
        ("APGD-CE, ms / iteration (median)", f"{result['per_iteration_ms']['apgd-ce']['median']:.2f}"),
        ("APGD-CE / PGD time per iteration (median [min, max])",
         "{median:.3f} [{min:.3f}, {max:.3f}]".format(**result["apgd_over_pgd_time_per_iteration"])),
        (f"autoattack images/s (n={n})", f"{result['autoattack']['images_per_s']:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
