"""Where the time of `tfrobust bench`'s training step goes: TF's profiler, op time by type, attack and training pass.

Builds the same step as `tfrobust bench` (model, precision, attack), runs
`--warmup` steps, then profiles `--iters` steps with `tf.profiler.experimental`
and sums the duration of every TF op the executor ran, by op type and by
phase: the attack's loop (the ops inside its `tf.while_loop`) or the rest of
the step (the training pass, the optimizer, the attack's random start; all of
FGSM-RS's single step, which has no loop).
Shares are of the summed op time, which on 2 cores is close to twice the
wall time when both cores are busy. Ops that oneDNN fused keep the name of
their last op and the type of the fused kernel (`_MklNativeFusedConv2D` is a
convolution with its bias and ReLU).

Usage:
    python benchmarks/profile_step.py --model preact_resnet18 --attack-precision bfloat16 \\
        --train-precision mixed_bfloat16 --json profile.json
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tfrobust import bench
from tfrobust.training import AdversarialModel

# Op events are named "op name:kernel". The executor's and thread pools' own events contain "::", and the eager
# call of the whole step ("EagerLocalExecute: __inference_...", which spans the ops it runs) ": ".
_NOT_AN_OP = ("::", ": ")
# TF's oneDNN kernels carry these prefixes; the table groups them with the plain op of the same name.
_KERNEL_PREFIXES = ("_MklNative", "_Mkl", "_")


def op_type(kernel):
    """`_MklNativeFusedConv2D` -> `FusedConv2D`: the op type without oneDNN's kernel prefix."""
    for prefix in _KERNEL_PREFIXES:
        if kernel.startswith(prefix) and len(kernel) > len(prefix):
            return kernel[len(prefix):]
    return kernel


def op_times(xspace):
    """Summed op durations in seconds by (phase, op type), from a profile's `XSpace`.

    Args:
        xspace: a parsed `tensorflow.tsl.profiler.protobuf.xplane_pb2.XSpace`.

    Returns:
        A `collections.Counter` keyed by ("attack" or "rest", op type).
    """
    times = collections.Counter()
    for plane in xspace.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or any(marker in name for marker in _NOT_AN_OP):
                    continue
                op, kernel = name.rsplit(":", 1)
                # The attack's passes run in a tf.while_loop; the training pass does not.
                phase = "attack" if "/while/" in op else "rest"
                times[phase, op_type(kernel)] += event.duration_ps * 1e-12
    return times


def read_profile(logdir):
    """The `XSpace` of the one profile under `logdir`."""
    [path] = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    xspace = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        xspace.ParseFromString(f.read())
    return xspace


def profile(model_name="resnet20", method="pgd", steps=10, batch_size=128, attack_precision="float32",
            train_precision="float32", warmup=2, iters=3, eps=8 / 255):
    """Profiles `iters` adversarial training steps of `tfrobust bench`'s step.

    Returns:
        A report dict: the settings, the wall seconds of the profiled steps, and `ops`, a list of
        {"phase", "op", "seconds", "share"} sorted by time, shares of the summed op time.
    """
    classifier = bench.build_classifier(model_name, (32, 32, 3), 10, train_precision)
    attack = bench.training_attack(method, eps, steps, attack_precision)
    model = AdversarialModel(classifier, attack=attack, method=method)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    _, _, x, y, seeds = bench._synthetic_data(0, batch_size, (32, 32, 3), 10)
    batch = ({"image": x, "seed": seeds}, y)
    for _ in range(warmup):
        model.train_on_batch(*batch)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(iters):
            model.train_on_batch(*batch)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        times = op_times(read_profile(logdir))
    total = sum(times.values())
    ops = [{"phase": phase, "op": op, "seconds": round(s, 4), "share": round(s / total, 4)}
           for (phase, op), s in times.most_common()]
    return {"model": model_name, "method": method, "steps": bench._attack_steps(method, steps),
            "batch_size": batch_size, "attack_precision": attack_precision, "train_precision": train_precision,
            "iters": iters, "wall_s": round(wall, 3), "op_s": round(total, 3), "machine": bench.machine(),
            "ops": ops}


def table(report, top=15):
    """The report's `top` op types as a Markdown table, the rest summed in a last row."""
    step = bench.step_name(report["method"], report["steps"])
    rows = [f"{report['model']}, {step} step, batch {report['batch_size']}, attack {report['attack_precision']}, "
            f"training {report['train_precision']}: {report['iters']} steps, {report['wall_s']:.1f} s wall, "
            f"{report['op_s']:.1f} s of op time", "", "| phase | op | share | seconds |", "|---|---|---|---|"]
    for op in report["ops"][:top]:
        rows.append(f"| {op['phase']} | {op['op']} | {100 * op['share']:.1f}% | {op['seconds']:.2f} |")
    rest = report["ops"][top:]
    if rest:
        rows.append(f"| | {len(rest)} other op types | {100 * sum(o['share'] for o in rest):.1f}% | "
                    f"{sum(o['seconds'] for o in rest):.2f} |")
    by_phase = collections.Counter()
    for op in report["ops"]:
        by_phase[op["phase"]] += op["share"]
    rows += ["", "By phase: " + ", ".join(f"{p} {100 * s:.1f}%" for p, s in sorted(by_phase.items()))]
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20", choices=sorted(bench.REFERENCE_MODELS))
    p.add_argument("--method", default="pgd", choices=bench.REFERENCE_METHODS)
    p.add_argument("--steps", type=int, default=10, help="k of PGD-k")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--attack-precision", default="float32", choices=bench.ATTACK_PRECISIONS)
    p.add_argument("--train-precision", default="float32", choices=bench.TRAIN_PRECISIONS)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=3, help="profiled steps")
    p.add_argument("--top", type=int, default=15, help="op types listed in the table")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    for flag in ("steps", "batch_size", "iters"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    report = profile(args.model, args.method, args.steps, args.batch_size, args.attack_precision,
                     args.train_precision, args.warmup, args.iters)
    report["command"] = "python benchmarks/profile_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(report, args.top))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
