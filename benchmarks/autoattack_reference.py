"""tfrobust's `autoattack` against the reference AutoAttack (fra31/auto-attack), point by point.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", arXiv 2003.01690. The reference is the
authors' PyTorch code. It runs in a worker process under a Python that has
torch and the reference installed (`--reference-python`; torch is not a
dependency of tfrobust). The worker loads the same tfrobust model and shows
it to the reference as a `torch.nn.Module` whose logits and input gradients
TensorFlow computes on the CPU (`torch_adapter`). The reference's own TF2
adapter is not used: it moves every tensor to CUDA. With `--reference-model
native` the worker instead ports the weights into the same network written
in PyTorch (`benchmarks/torch_reference.py`, `port`; ResNets and
PreActResNet-18), checks that its logits equal TensorFlow's on the points,
and the reference attacks that: AutoAttack as its users run it, the speed
comparison without any adapter.

Both sides attack the same first n test images at the same eps, norm and
AutoAttack version, one after the other (tfrobust first), each with seed 0.
The JSON holds both sides' per-point outcomes, the comparison of `compare`,
the reference's commit (and whether the installed copy matches it), the
command and the machine.

Times: tfrobust's is the wall time of `tfrobust.evaluation.evaluate` on the
points, tracing included, without the gradient-masking checks; the
reference's is the wall time of `run_standard_evaluation`, including its
own quick checks (randomness, output range), without loading TF, torch
or the model. The adapter makes the reference pay for something PyTorch
would not: each backward pass recomputes the forward pass in TensorFlow
(torch's autograd cannot hand TensorFlow's tape from the forward to the
backward). The worker times those repeated forwards, and the comparison
reports a fair speed ratio without them (`speed_ratio_fair`), beside the
plain one.

Usage (see benchmarks/README.md for the setup and the runs):
    python benchmarks/autoattack_reference.py --model saved_models/mnist_pgd_linf/3 \\
        --dataset mnist --data-dir ../shared/datasets --eps 0.3 --norm Linf --n 500 \\
        --reference-python /work/venv-torch/bin/python \\
        --reference-git-dir /work/.mirror/fra31+auto-attack/repo \\
        --json benchmarks/results/<date>-autoattack-reference-mnist.json
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The targets of the parity issue (#23). A point is 1/n of the accuracy, so
# 0.5 points is 2.5 points at n = 500: the tolerance covers the runs' own
# randomness (different seeds and random streams on the two sides), not a
# systematic gap. tfrobust may be stronger than the reference by any amount.
ACCURACY_TOLERANCE = 0.005
# Points tfrobust calls robust but the reference breaks, as a fraction of n.
MISSED_TOLERANCE = 0.005

# How far outside [0, 1] the reference's images may stray by float rounding before the adapter objects
# (its L1 projection: ~5e-7 measured).
BOX_SLACK = 1e-5

# tfrobust's name of each AutoAttack version (tfrobust.attacks.registry).
_ATTACK_NAMES = {"standard": "autoattack", "plus": "autoattack-plus", "rand": "autoattack-rand"}
# The reference spells the norms with capitals.
_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def compare(tfrobust_robust, reference_robust, tfrobust_seconds, reference_seconds, reference_repeated_seconds=None):
    """Compares per-point outcomes of tfrobust and the reference on the same points.

    Args:
        tfrobust_robust: bool array `[n]`, True where tfrobust's attack left the
            point correctly classified.
        reference_robust: bool array `[n]`, the same for the reference.
        tfrobust_seconds: float > 0, tfrobust's wall time, or None when its
            outcomes were read from an earlier evaluation (no speed ratio then).
        reference_seconds: float > 0, the reference's wall time.
        reference_repeated_seconds: the part of `reference_seconds` spent on
            forward passes that the adapter repeats in the backward pass
            (`torch_adapter`), or None if not measured.

    Returns:
        A JSON-ready dict: `n`, both robust accuracies, `accuracy_gap`
        (tfrobust minus reference, a fraction), `tfrobust_only` (indices of
        points tfrobust calls robust and the reference breaks) and
        `reference_only` (the other way), `targets` (each target and whether
        it holds), `speed_ratio` (reference seconds over tfrobust seconds:
        above 1, tfrobust is faster) and `speed_ratio_fair` (the same without
        the repeated forwards; None when they or tfrobust's time are unknown).
    """
    ours = np.asarray(tfrobust_robust)
    theirs = np.asarray(reference_robust)
    for name, a in (("tfrobust_robust", ours), ("reference_robust", theirs)):
        if a.dtype != bool or a.ndim != 1:
            raise ValueError(f"{name} must be a 1-D bool array. Received: {name}.dtype={a.dtype}, "
                             f"{name}.shape={a.shape}")
    if ours.shape != theirs.shape or ours.size == 0:
        raise ValueError("tfrobust_robust and reference_robust must hold the same n > 0 points. "
                         f"Received: shapes {ours.shape} and {theirs.shape}")
    timed = [("reference_seconds", reference_seconds)]
    if tfrobust_seconds is not None:
        timed.append(("tfrobust_seconds", tfrobust_seconds))
    for name, t in timed:
        if not t > 0:
            raise ValueError(f"{name} must be > 0. Received: {name}={t}")
    if reference_repeated_seconds is not None and not 0 <= reference_repeated_seconds < reference_seconds:
        raise ValueError("reference_repeated_seconds must be in [0, reference_seconds). Received: "
                         f"reference_repeated_seconds={reference_repeated_seconds}, "
                         f"reference_seconds={reference_seconds}")
    n = int(ours.size)
    ours_acc, theirs_acc = float(ours.mean()), float(theirs.mean())
    tfrobust_only = np.flatnonzero(ours & ~theirs).tolist()
    reference_only = np.flatnonzero(theirs & ~ours).tolist()
    # Accuracies are multiples of 1/n; the small slack keeps a gap of exactly
    # the tolerance from failing on rounding.
    accuracy_holds = ours_acc <= theirs_acc + ACCURACY_TOLERANCE + 1e-12
    missed_holds = len(tfrobust_only) <= MISSED_TOLERANCE * n + 1e-12
    return {
        "n": n,
        "tfrobust_accuracy": ours_acc,
        "reference_accuracy": theirs_acc,
        "accuracy_gap": ours_acc - theirs_acc,
        "tfrobust_only": tfrobust_only,
        "reference_only": reference_only,
        "targets": {
            "accuracy": {"rule": f"tfrobust accuracy <= reference + {100 * ACCURACY_TOLERANCE:g} points",
                         "holds": bool(accuracy_holds)},
            "tfrobust_only": {"rule": f"points tfrobust calls robust and the reference breaks <= "
                                      f"{100 * MISSED_TOLERANCE:g}% of n ({MISSED_TOLERANCE * n:g})",
                              "count": len(tfrobust_only), "holds": bool(missed_holds)},
        },
        "all_targets_hold": bool(accuracy_holds and missed_holds),
        "tfrobust_seconds": None if tfrobust_seconds is None else float(tfrobust_seconds),
        "reference_seconds": float(reference_seconds),
        "speed_ratio": None if tfrobust_seconds is None else float(reference_seconds) / float(tfrobust_seconds),
        "reference_repeated_forward_seconds": (None if reference_repeated_seconds is None
                                               else float(reference_repeated_seconds)),
        "speed_ratio_fair": (None if tfrobust_seconds is None or reference_repeated_seconds is None
                             else (float(reference_seconds) - float(reference_repeated_seconds))
                             / float(tfrobust_seconds)),
    }


def _seconds(value, digits=1):
    return "not timed (read from an evaluation)" if value is None else f"{value:.{digits}f} s"


def table(comparison):
    """A short text table of a `compare` result."""
    c = comparison
    rows = [
        ("", "tfrobust", "reference"),
        ("robust accuracy", f"{100 * c['tfrobust_accuracy']:.2f}%", f"{100 * c['reference_accuracy']:.2f}%"),
        ("wall time", _seconds(c["tfrobust_seconds"]), _seconds(c["reference_seconds"])),
        ("robust here, broken there", str(len(c["tfrobust_only"])), str(len(c["reference_only"]))),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    speed = "" if c["speed_ratio"] is None else f"; reference time / tfrobust time = {c['speed_ratio']:.2f}"
    if c.get("speed_ratio_fair") is not None and c["reference_repeated_forward_seconds"]:
        speed += (f" ({c['speed_ratio_fair']:.2f} without the {c['reference_repeated_forward_seconds']:.0f} s of "
                  "forward passes the adapter repeats)")
    lines.append(f"n = {c['n']}; gap {100 * c['accuracy_gap']:+.2f} points{speed}")
    for key in ("accuracy", "tfrobust_only"):
        target = c["targets"][key]
        lines.append(f"target {target['rule']}: {'holds' if target['holds'] else 'FAILS'}")
    if c["tfrobust_only"]:
        lines.append(f"points tfrobust calls robust and the reference breaks: {c['tfrobust_only']}")
    return "\n".join(lines)


_STAGE_RE = re.compile(r"robust accuracy after ([A-Za-z-]+): ([0-9.]+)%")


def reference_stages(log):
    """{component: robust accuracy after it} from the reference's log lines, components in lower case."""
    return {m.group(1).lower(): float(m.group(2)) / 100 for m in map(_STAGE_RE.search, log) if m}


_ORDER_RE = re.compile(r"version including (.*)\.$")
_INITIAL_RE = re.compile(r"initial accuracy: ([0-9.]+)%")


def all_stages(log):
    """Like `reference_stages`, with every component of the run: those the reference did not log.

    The reference stops logging when no robust point is left; the components
    after that leave what the last one left (or the clean accuracy).
    """
    logged = reference_stages(log)
    order = next((m.group(1).split(", ") for m in map(_ORDER_RE.search, log) if m), list(logged))
    last = next((float(m.group(1)) / 100 for m in map(_INITIAL_RE.search, log) if m), None)
    stages = {}
    for name in order:
        last = logged.get(name, last)
        if last is not None:
            stages[name] = last
    return stages


def _model_label(r):
    return r["model"] + (f" quantised to {r['quantise']} levels" if r.get("quantise") else "")


def _threat(r):
    """"Linf 8/255" for a Linf radius that is a whole number of grey levels, else "L2 0.5"."""
    eps = r["eps"]
    if r["norm"] == "Linf" and eps < 1 and abs(eps * 255 - round(eps * 255)) < 1e-6 and round(eps * 255) > 1:
        return f"{r['norm']} {round(eps * 255)}/255"
    return f"{r['norm']} {eps:g}"


def summary(results):
    """A Markdown table of several runs' results (the JSON this script writes), one row per run."""
    lines = ["| model | threat | n | clean | tfrobust | reference | gap (points) | robust here, broken there "
             "| after each stage, tfrobust / reference | tfrobust s | reference s | speed ratio | fair speed ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["comparison"]
        model, threat = _model_label(r), _threat(r)
        port = " (reference on the PyTorch port)" if r["reference"].get("model") == "native" else ""
        clean = sum(r["clean"]["tfrobust"]) / len(r["clean"]["tfrobust"])
        ref = r["reference"].get("stages") or reference_stages(r["reference"]["log"])
        stages = ", ".join(f"{name} {100 * acc:.1f} / {100 * ref[name]:.1f}" if name in ref else
                           f"{name} {100 * acc:.1f} / -" for name, acc in r["tfrobust"]["after"].items())
        lines.append(f"| `{model}`{port} | {threat} | {c['n']} | {100 * clean:.1f} | {100 * c['tfrobust_accuracy']:.1f} | "
                     f"{100 * c['reference_accuracy']:.1f} | {100 * c['accuracy_gap']:+.1f} | "
                     f"{len(c['tfrobust_only'])} | {stages} | "
                     + ("from the evaluation | " if c["tfrobust_seconds"] is None else f"{c['tfrobust_seconds']:.0f} | ")
                     + f"{c['reference_seconds']:.0f} | "
                     + ("- |" if c["speed_ratio"] is None else f"{c['speed_ratio']:.2f} |")
                     + (" - |" if c.get("speed_ratio_fair") is None else f" {c['speed_ratio_fair']:.2f} |"))
    return "\n".join(lines)


_STAGE_TIME_RE = re.compile(r"robust accuracy after ([A-Za-z-]+): [0-9.]+% \(total time ([0-9.]+) s\)")


def reference_stage_seconds(log):
    """{component: its own seconds} from the reference's log, summed over chunks.

    Each run's lines give its running total; a `--state-dir` run's log is its
    chunks' logs, each after a line "== chunk K".
    """
    seconds, previous = {}, 0.0
    for line in log:
        if line.startswith("== chunk"):
            previous = 0.0
        m = _STAGE_TIME_RE.search(line)
        if m:
            name = m.group(1).lower()
            seconds[name] = seconds.get(name, 0.0) + float(m.group(2)) - previous
            previous = float(m.group(2))
    return seconds


def stage_summary(results):
    """A Markdown table of each component's wall time on both sides, for the runs that timed tfrobust's.

    tfrobust's figure is followed by its first call's share in brackets (the
    call that traced the component).
    """
    lines = ["| model | threat | n | component | tfrobust s (first call) | reference s |", "|---|---|---|---|---|---|"]
    for r in results:
        stages = r["tfrobust"].get("stages")
        if not stages:
            continue
        theirs = reference_stage_seconds(r["reference"].get("log") or [])
        for name, t in stages.items():
            ref = f"{theirs[name]:.0f}" if name in theirs else "-"
            lines.append(f"| `{_model_label(r)}` | {_threat(r)} | {r['comparison']['n']} | {name} | "
                         f"{t['seconds']:.0f} ({t['first_call_seconds']:.0f}) | {ref} |")
    return "\n".join(lines) if len(lines) > 2 else ""


class Quantised:
    """A classifier behind input quantisation: a planted gradient mask.

    `tf.round` has no gradient, so every gradient-based attack sees zeros and
    only the black-box Square attack can break the model; both sides are
    expected to find that.

    Args:
        classifier: `classifier(x, training=False) -> logits` with `output_shape`.
        levels: int >= 2, grey levels per channel.
    """

    def __init__(self, classifier, levels):
        if int(levels) != levels or levels < 2:
            raise ValueError(f"levels must be an integer >= 2. Received: levels={levels}")
        self.classifier = classifier
        self.levels = int(levels)
        self.output_shape = classifier.output_shape

    def __call__(self, x, training=False):
        import tensorflow as tf

        steps = float(self.levels - 1)
        return self.classifier(tf.round(x * steps) / steps, training=training)


def load_model(path, quantise=None):
    """The tfrobust classifier at `path`, behind `Quantised` if `quantise` is given."""
    from tfrobust import experiment

    classifier, _ = experiment.load_classifier(path)
    return classifier if quantise is None else Quantised(classifier, quantise)


def torch_adapter(classifier, image_shape):
    """A `torch.nn.Module` on NCHW float32 inputs whose logits and input gradients TensorFlow computes.

    The forward pass converts the batch to NHWC and calls `classifier`; the
    backward pass returns TensorFlow's vector-Jacobian product for the
    incoming gradient, so every `backward()` the reference makes (one per
    class in untargeted FAB) is one TensorFlow gradient. Everything stays on
    the CPU.

    PyTorch keeps a forward pass's activations for its backward pass; here the
    backward pass computes the forward again (TensorFlow's tape cannot outlive
    the compiled function). The module's `repeated_forward_seconds` adds up,
    for each backward pass, the time its forward took: what the reference pays
    only because of the adapter.

    Args:
        classifier: `classifier(x, training=False) -> logits` on float32 NHWC in [0, 1].
        image_shape: `(H, W, C)`.

    Returns:
        A `torch.nn.Module` in eval mode, with no parameters, and a float
        attribute `repeated_forward_seconds`.
    """
    import tensorflow as tf
    import torch

    spec = tf.TensorSpec([None, *image_shape], tf.float32)

    @tf.function(input_signature=[spec])
    def logits_fn(x):
        return classifier(x, training=False)

    @tf.function(input_signature=[spec, tf.TensorSpec([None, None], tf.float32)])
    def vjp_fn(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = classifier(x, training=False)
        # Behind input quantisation the logits do not depend on x through any differentiable op: the
        # gradient is zero (what the reference's attacks then see), not None.
        return tape.gradient(logits, x, output_gradients=upstream,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def to_tf(x):
        x = x.detach().to(torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        # The reference's L1 projection leaves points up to ~5e-7 outside [0, 1] (float rounding), which a
        # tfrobust model refuses; those are clipped. A larger excursion is a real fault and is said.
        outside = float(max(np.max(x, initial=0.0) - 1.0, -np.min(x, initial=0.0), 0.0))
        if outside > BOX_SLACK:
            raise ValueError(f"the reference passed images {outside:g} outside [0, 1] (more than {BOX_SLACK:g})")
        return tf.constant(np.clip(x, 0.0, 1.0))

    class TFLogits(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            start = time.perf_counter()
            logits = torch.from_numpy(np.array(logits_fn(to_tf(x)).numpy(), copy=True))
            ctx.forward_seconds = time.perf_counter() - start
            return logits

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            g = vjp_fn(to_tf(x), tf.constant(grad.detach().to(torch.float32).contiguous().numpy()))
            module.repeated_forward_seconds += ctx.forward_seconds
            return torch.from_numpy(np.array(g.numpy(), copy=True)).permute(0, 3, 1, 2).contiguous()

    class TFClassifier(torch.nn.Module):
        def forward(self, x):
            return TFLogits.apply(x)

    module = TFClassifier().eval()
    module.repeated_forward_seconds = 0.0
    return module


def keras_layers(classifier):
    """The weights of a tfrobust Keras classifier by layer name, for `torch_reference.port`.

    Raises:
        ValueError: a layer with weights of a kind the port does not know
            (MixBN, for example).
    """
    import keras

    from tfrobust.models.normalization import Normalize

    layers = {"architecture": classifier.name}
    for layer in classifier.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layers[layer.name] = {"gamma": layer.gamma.numpy(), "beta": layer.beta.numpy(),
                                  "moving_mean": layer.moving_mean.numpy(),
                                  "moving_variance": layer.moving_variance.numpy(), "epsilon": layer.epsilon}
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            layers[layer.name] = {"kernel": layer.kernel.numpy(),
                                  **({"bias": layer.bias.numpy()} if layer.bias is not None else {})}
        elif isinstance(layer, Normalize):
            layers[layer.name] = {k: np.asarray(v, np.float32) for k, v in (("mean", layer.mean), ("std", layer.std))
                                  if v is not None}
        elif layer.weights:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no PyTorch port: "
                             f"use --reference-model adapter")
    return layers


def keras_classifier(model, images):
    """The Keras classifier at `model` (an export is rebuilt from its recipe and checked on `images`)."""
    from tfrobust import experiment

    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        return experiment.rebuild_classifier(model, images=images)[0]
    return load_model(model)


# Largest |logit difference| allowed between the PyTorch port and TensorFlow (float32 rounding through a deep
# network; measured ~1e-5 on the shipped models).
PORT_TOLERANCE = 1e-3


def native_module(model, images):
    """The PyTorch port of the tfrobust classifier at `model`, checked against TensorFlow on `images`.

    Returns:
        `(module, max_abs_difference)`.

    Raises:
        ValueError: no port for the network, or logits that differ by more
            than `PORT_TOLERANCE` or in any point's class.
    """
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("torch_reference", os.path.join(REPO, "benchmarks",
                                                                                   "torch_reference.py"))
    torch_reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_reference)
    classifier = keras_classifier(model, images)
    module = torch_reference.port(keras_layers(classifier), num_classes=int(classifier.output_shape[-1]))
    ours = np.concatenate([np.asarray(classifier(images[i:i + 250], training=False))
                           for i in range(0, len(images), 250)])
    with torch.no_grad():
        theirs = module(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()
    difference = float(np.max(np.abs(ours - theirs)))
    if difference > PORT_TOLERANCE or np.any(ours.argmax(1) != theirs.argmax(1)):
        raise ValueError(f"the PyTorch port of {model} differs from TensorFlow (max |logit difference| "
                         f"{difference:.2e}, {int(np.sum(ours.argmax(1) != theirs.argmax(1)))} classes)")
    return module, difference


def git_blob_sha(data):
    """The object id git gives a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def reference_commit(git_dir, package_dir):
    """The reference's commit and whether the installed package is that commit's `autoattack/`.

    Args:
        git_dir: the reference's git directory (a bare mirror or a clone's `.git`).
        package_dir: the directory of the `autoattack` package the worker imported.

    Returns:
        dict: `commit`, `installed_matches_commit` (every `.py` file of the
        commit's `autoattack/` present and byte-equal, and no other) and
        `differing_files`.
    """
    def git(*args):
        return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True,
                              check=True).stdout

    commit = git("rev-parse", "HEAD").strip()
    expected = {}
    for line in git("ls-tree", "-r", commit, "autoattack").splitlines():
        meta, path = line.split("\t", 1)
        rel = os.path.relpath(path, "autoattack")
        if path.endswith(".py") and not rel.startswith("examples"):
            expected[rel] = meta.split()[2]
    installed = {}
    for root, _, files in os.walk(package_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), package_dir)
            if name.endswith(".py") and not rel.startswith("examples"):
                with open(os.path.join(root, name), "rb") as f:
                    installed[rel] = git_blob_sha(f.read())
    differing = sorted(k for k in set(expected) | set(installed) if expected.get(k) != installed.get(k))
    return {"commit": commit, "git_dir": git_dir, "package_dir": package_dir,
            "installed_matches_commit": not differing, "differing_files": differing}


def run_tfrobust(classifier, images, labels, eps, norm, version="standard", batch_size=250, seed=0):
    """tfrobust's AutoAttack on the points, through `evaluation.evaluate`.

    Returns:
        dict: `robust` and `clean` (bool `[n]`), `seconds`, `after` (robust
        accuracy after each component), `attack` (its config), `warnings` and
        `stages` (each component's wall time, `robustness.timed_attacks`).
    """
    from tfrobust.attacks import registry
    from tfrobust.evaluation import robustness

    attack = registry.build(_ATTACK_NAMES[version], eps, norm.lower())
    start = time.perf_counter()
    with robustness.timed_attacks() as stages:
        report = robustness.evaluate(classifier, images, labels, [attack], batch_size=batch_size, seed=seed,
                                     worst_case=False, verbose=0, checks=False)
    seconds = time.perf_counter() - start
    result = report.results[0]
    return {"robust": np.asarray(result.robust, bool), "clean": np.asarray(report.clean_correct, bool),
            "seconds": seconds, "after": result.extra.get("after"), "attack": attack.get_config(),
            "warnings": list(report.warnings), "stages": stages}


def saved_tfrobust(state_dir, model, images, labels, n, eps, norm, version="standard", seed=0):
    """tfrobust's AutoAttack outcomes on the first n points, read from an earlier evaluation's state.

    An evaluation that took hours (`tfrobust export --state-dir`, `tfrobust
    eval --state-dir`) already holds tfrobust's per-point outcomes; this reads
    them instead of attacking again. The state must belong to the model's
    weights (an export is rebuilt to compare them) and to these images, hold
    this AutoAttack version at this eps and norm with this seed, and have
    finished at least n points.

    Args:
        state_dir: the evaluation's state directory.
        model: the model's path (an exported version, a run or a .keras file).
        images, labels: the test images as that evaluation was given them
            (uint8), at least as many as it covers.
        n, eps, norm, version, seed: as for `run_tfrobust`.

    Returns:
        dict as from `run_tfrobust`, with `seconds` None and `from_state`.

    Raises:
        ValueError: the state does not fit (the message names --tfrobust-state).
    """
    from tfrobust import experiment
    from tfrobust.evaluation import robustness

    from tfrobust.attacks import registry

    try:
        # `tfrobust eval EXPORT` ties its state to the export's path, `tfrobust export EXPORT` to the weights of
        # the classifier it rebuilds: the state says which.
        classifier = load_model(model)
        try:
            configs, saved_seed, out = robustness.saved_outcomes(state_dir, classifier, images, labels)
        except ValueError:
            if not os.path.isfile(os.path.join(model, "saved_model.pb")):
                raise
            classifier = experiment.rebuild_classifier(model, images=images[:n])[0]
            configs, saved_seed, out = robustness.saved_outcomes(state_dir, classifier, images, labels)
    except (OSError, ValueError) as e:
        raise ValueError(f"--tfrobust-state {state_dir}: {e}") from None
    name = _ATTACK_NAMES[version]
    # The whole configuration, not the name alone: a state of a shortened AutoAttack (fewer steps or queries)
    # is not the ensemble the reference runs.
    wanted = json.loads(json.dumps(registry.build(name, eps, norm.lower()).get_config()))
    found = [i for i, c in enumerate(configs) if c == wanted]
    if not found:
        near = [c for c in configs if c["name"] == name]
        differ = sorted(k for k in set(wanted) | set(near[0]) if wanted.get(k) != near[0].get(k)) if near else []
        raise ValueError(f"--tfrobust-state {state_dir} holds no {version} {name} at {norm} eps={eps:g} "
                         + (f"(its {name} differs in: {', '.join(differ)})." if near else
                            f"(it holds {', '.join(c['name'] for c in configs)})."))
    if saved_seed != seed:
        raise ValueError(f"--tfrobust-state {state_dir} was evaluated with seed {saved_seed}, not --seed {seed}.")
    done = len(out.get("clean", ()))
    if done < n:
        raise ValueError(f"--tfrobust-state {state_dir} has finished {done} points, fewer than --n {n}.")
    i = found[0]
    after = out[f"after_{i}"][:n]
    names = [c["name"] for c in configs[i]["components"]]
    return {"robust": out[f"robust_{i}"][:n], "clean": out["clean"][:n], "seconds": None,
            "after": {c: float(np.mean(after[:, j])) for j, c in enumerate(names)}, "attack": configs[i],
            "warnings": [], "from_state": state_dir}


def worker_command(python, model, points, out, eps, norm, version, seed, batch_size, quantise=None,
                   reference_model="adapter"):
    """The command line of a reference worker (`--worker` mode of this script)."""
    command = [python, os.path.abspath(__file__), "--worker", "--model", model, "--points", points,
               "--worker-out", out, "--eps", repr(float(eps)), "--norm", norm, "--version", version,
               "--seed", str(seed), "--batch-size", str(batch_size)]
    if quantise is not None:
        command += ["--quantise", str(quantise)]
    if reference_model != "adapter":
        command += ["--reference-model", reference_model]
    return command


def run_reference(command, out):
    """Runs a reference worker and reads its outcome.

    Args:
        command: from `worker_command`.
        out: the JSON file the worker writes.

    Returns:
        dict: `robust` and `clean` (bool `[n]`), `seconds` and the worker's
        other fields (log, versions, maximal perturbation).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"The reference worker failed (exit {proc.returncode}): {shlex.join(command)}\n"
                           f"{proc.stderr[-4000:]}")
    with open(out) as f:
        result = json.load(f)
    result["robust"] = np.asarray(result["robust"], bool)
    result["clean"] = np.asarray(result["clean"], bool)
    return result


_TEXT_FIELDS = ("torch", "python", "package_dir")


def weights_identity(model, images):
    """What a model's reference chunks are tied to: its weights, wherever the model lies.

    An export is rebuilt as a Keras classifier to read its weights (checked
    on `images`), so that another export of the same weights, or the same
    export in another checkout, continues the same chunks; an export that
    records no recipe is identified by its files' SHA-256.
    """
    from tfrobust import experiment, zoo
    from tfrobust.stores import weights_fingerprint

    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        try:
            return weights_fingerprint(experiment.rebuild_classifier(model, images=images)[0])
        except ValueError:
            return "sha256 " + zoo.checksum(model)
    return weights_fingerprint(load_model(model))


def run_reference_in_chunks(make_command, images, labels, chunk, state_dir, fingerprint):
    """The reference's side in chunks of points, each kept in `state_dir` as it finishes.

    A run of hours is not lost to a kill: run again with the same state
    directory, it continues after the last finished chunk. Each chunk is one
    worker process with the reference's seed; the wall time is the sum of the
    chunks' `run_standard_evaluation` times.

    Args:
        make_command: `(points_file, out_file) -> worker command line`.
        images, labels: the n points.
        chunk: points per worker.
        state_dir: where the finished chunks are kept.
        fingerprint: what the chunks are tied to (the model's weights, the
            points, the attack); a state directory of another run is refused.

    Returns:
        dict as from `run_reference`, plus `stages` (robust accuracy after each
        component, over all points) and `chunks`.
    """
    from tfrobust.stores import BatchStore

    store = BatchStore(state_dir, fingerprint, "reference AutoAttack run")
    parts = []
    for index, start in enumerate(range(0, len(labels), chunk)):
        if not os.path.exists(store.path(index)):
            with tempfile.TemporaryDirectory() as tmp:
                points, out = os.path.join(tmp, "points.npz"), os.path.join(tmp, "reference.json")
                np.savez(points, images=images[start:start + chunk], labels=labels[start:start + chunk])
                r = run_reference(make_command(points, out), out)
            store.write(index, robust=r["robust"], clean=r["clean"], seconds=np.float64(r["seconds"]),
                        repeated_forward_seconds=np.float64(r.get("repeated_forward_seconds", np.nan)),
                        max_distance=np.float64(r["max_distance"]), finite=np.bool_(r["finite"]),
                        log=np.array(r["log"], dtype=str), torch_threads=np.int64(r["torch_threads"]),
                        port_max_abs_difference=np.float64(
                            np.nan if r.get("port_max_abs_difference") is None else r["port_max_abs_difference"]),
                        **{k: np.array(r[k], dtype=str) for k in _TEXT_FIELDS})
            print(f"reference: points {start}-{start + len(r['robust']) - 1} done in {r['seconds']:.0f} s",
                  flush=True)
        parts.append(store.read(index))
    stages = {}
    for part in parts:
        for name, value in all_stages(part["log"].tolist()).items():
            stages[name] = stages.get(name, 0.0) + value * len(part["robust"])
    n = sum(len(part["robust"]) for part in parts)
    merged = {
        "robust": np.concatenate([part["robust"] for part in parts]).astype(bool),
        "clean": np.concatenate([part["clean"] for part in parts]).astype(bool),
        "seconds": float(sum(part["seconds"] for part in parts)),
        # Chunks made before the adapter timed its repeated forwards have none: then the total is unknown.
        "repeated_forward_seconds": (None if any("repeated_forward_seconds" not in part
                                                 or np.isnan(part["repeated_forward_seconds"]) for part in parts)
                                     else float(sum(part["repeated_forward_seconds"] for part in parts))),
        "max_distance": float(max(part["max_distance"] for part in parts)),
        "finite": bool(all(part["finite"] for part in parts)),
        "log": [line for i, part in enumerate(parts) for line in [f"== chunk {i}"] + part["log"].tolist()],
        "torch_threads": int(parts[0]["torch_threads"]),
        "port_max_abs_difference": max((float(part["port_max_abs_difference"]) for part in parts
                                        if "port_max_abs_difference" in part
                                        and not np.isnan(part["port_max_abs_difference"])), default=None),
        "stages": {name: total / n for name, total in stages.items()},
        "chunks": [len(part["robust"]) for part in parts],
    }
    merged.update({k: str(parts[0][k]) for k in _TEXT_FIELDS})
    return merged


def worker(args):
    """The reference's side: runs in a Python with torch and `autoattack` installed."""
    import torch
    from autoattack import AutoAttack

    with np.load(args.points) as z:
        images, labels = z["images"], z["labels"]
    port_difference = None
    if args.reference_model == "native":
        module, port_difference = native_module(args.model, images)
        module.repeated_forward_seconds = 0.0
    else:
        classifier = load_model(args.model, args.quantise)
        module = torch_adapter(classifier, images.shape[1:])
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))
    log_path = args.worker_out + ".log"
    adversary = AutoAttack(module, norm=args.norm, eps=args.eps, seed=args.seed, version=args.version,
                           device="cpu", log_path=log_path)
    with torch.no_grad():
        clean = module(x).argmax(1) == y
    module.repeated_forward_seconds = 0.0
    start = time.perf_counter()
    x_adv, y_adv = adversary.run_standard_evaluation(x, y, bs=args.batch_size, return_labels=True)
    seconds = time.perf_counter() - start
    delta = (x_adv - x).reshape(len(x), -1)
    distance = {"Linf": delta.abs().max(1)[0], "L2": delta.norm(dim=1), "L1": delta.abs().sum(1)}[args.norm]
    with open(log_path) as f:
        log = f.read().splitlines()
    import autoattack

    result = {
        "robust": (y_adv == y).tolist(),
        "clean": clean.tolist(),
        "seconds": seconds,
        "repeated_forward_seconds": module.repeated_forward_seconds,
        "reference_model": args.reference_model,
        "port_max_abs_difference": port_difference,
        "max_distance": float(distance.max()),
        "finite": bool(torch.isfinite(x_adv).all()),
        "log": log,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.executable,
        "package_dir": os.path.dirname(os.path.abspath(autoattack.__file__)),
    }
    with open(args.worker_out, "w") as f:
        json.dump(result, f)
    return 0


def parse_eps(text):
    """eps from the command line: a number or a fraction such as 8/255."""
    num, _, den = text.partition("/")
    try:
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"eps must be a number or a fraction. Received: eps={text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"eps must be > 0. Received: eps={text!r}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarise", nargs="+", metavar="JSON",
                        help="print a Markdown table of results written by earlier runs, and stop")
    parser.add_argument("--model", help="a SavedModel version directory, a run directory or .keras")
    parser.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100 or svhn")
    parser.add_argument("--data-dir", help="directory of npz files (tfrobust.data.load)")
    parser.add_argument("--eps", type=parse_eps, help="e.g. 0.3 or 8/255")
    parser.add_argument("--norm", choices=sorted(_NORMS.values()))
    parser.add_argument("--n", type=int, default=500, help="the first n test images")
    parser.add_argument("--version", choices=sorted(_ATTACK_NAMES), default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250, help="both sides (the reference's bs)")
    parser.add_argument("--quantise", type=int, help="put the model behind input quantisation with this "
                        "many levels (a planted gradient mask), on both sides")
    parser.add_argument("--reference-python", default=sys.executable,
                        help="a Python with torch and the reference `autoattack` installed")
    parser.add_argument("--reference-git-dir", help="the reference's git directory, for its commit")
    parser.add_argument("--reference-model", choices=("adapter", "native"), default="adapter",
                        help="what the reference attacks: the tfrobust model behind a torch adapter (TensorFlow "
                             "computes it), or the same weights ported to the same network in PyTorch (ResNets, "
                             "PreActResNet-18)")
    parser.add_argument("--json", help="where to write the result")
    parser.add_argument("--state-dir", help="run the reference in chunks of --chunk points, each kept here as it "
                                            "finishes; the same command continues after a kill")
    parser.add_argument("--chunk", type=int, default=100, help="points per reference worker with --state-dir")
    parser.add_argument("--tfrobust-state", metavar="DIR",
                        help="read tfrobust's outcomes from this evaluation state directory (of an earlier "
                             "`tfrobust eval/export --state-dir` of the same model) instead of attacking again")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--points", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.summarise:
        return args
    for flag in ("model", "eps", "norm") + (() if args.worker else ("dataset",)):
        if getattr(args, flag) is None:
            parser.error(f"--{flag} is required")
    if args.n <= 0:
        parser.error(f"--n must be > 0. Received: n={args.n}")
    if args.chunk <= 0:
        parser.error(f"--chunk must be > 0. Received: chunk={args.chunk}")
    if args.tfrobust_state and args.quantise:
        parser.error("--tfrobust-state reads an evaluation of the model itself; it cannot go with --quantise")
    if args.reference_model == "native" and args.quantise:
        parser.error("--reference-model native ports the model itself; it cannot go with --quantise")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.summarise:
        results = []
        for path in args.summarise:
            with open(path) as f:
                results.append(json.load(f))
        print(summary(results))
        stages = stage_summary(results)
        if stages:
            print("\n" + stages)
        return 0
    if args.worker:
        return worker(args)

    from tfrobust import bench, data

    test = data.load(args.dataset, "test", data_dir=args.data_dir)
    n = min(args.n, len(test.labels))
    images = test.images[:n].astype(np.float32) / 255.0
    labels = test.labels[:n].astype(np.int64)
    if args.tfrobust_state:
        try:
            ours = saved_tfrobust(args.tfrobust_state, args.model, test.images, test.labels, n, args.eps,
                                  args.norm, args.version, args.seed)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        classifier = load_model(args.model, args.quantise)
        ours = run_tfrobust(classifier, images, labels, args.eps, args.norm, args.version, args.batch_size,
                            args.seed)
    def make_command(points, out):
        return worker_command(args.reference_python, args.model, points, out, args.eps, args.norm,
                              args.version, args.seed, args.batch_size, args.quantise, args.reference_model)

    if args.state_dir:
        fingerprint = {"model": weights_identity(args.model, images), "quantise": args.quantise, "n": n,
                       "images_sha1": hashlib.sha1(images.tobytes()).hexdigest(), "eps": args.eps,
                       "norm": args.norm, "version": args.version, "seed": args.seed,
                       "batch_size": args.batch_size, "chunk": args.chunk}
        if args.reference_model != "adapter":  # (the adapter's chunks, made before the choice, name none)
            fingerprint["reference_model"] = args.reference_model
        try:
            theirs = run_reference_in_chunks(make_command, images, labels, args.chunk, args.state_dir, fingerprint)
        except ValueError as e:  # another run's state directory
            print(f"error: --state-dir: {e}", file=sys.stderr)
            return 2
    else:
        with tempfile.TemporaryDirectory() as tmp:
            points, out = os.path.join(tmp, "points.npz"), os.path.join(tmp, "reference.json")
            np.savez(points, images=images, labels=labels)
            theirs = run_reference(make_command(points, out), out)

    comparison = compare(ours["robust"], theirs["robust"], ours["seconds"], theirs["seconds"],
                         theirs.get("repeated_forward_seconds"))
    commit = None
    if args.reference_git_dir:
        commit = reference_commit(args.reference_git_dir, theirs["package_dir"])
    result = {
        "command": shlex.join(["python", "benchmarks/autoattack_reference.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "machine": dict(bench.machine(), torch=theirs["torch"], torch_threads=theirs["torch_threads"]),
        "model": args.model,
        "quantise": args.quantise,
        "data": f"{test.source}; first {n} test examples",
        "eps": args.eps,
        "norm": args.norm,
        "version": args.version,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "order": ("tfrobust read from " + ours["from_state"] + ", then the reference" if ours.get("from_state")
                  else "tfrobust, then the reference"),
        "reference": {
            "commit": commit,
            "python": theirs["python"],
            "model": args.reference_model,
            "port_max_abs_difference": theirs.get("port_max_abs_difference"),
            "max_distance": theirs["max_distance"],
            "finite": theirs["finite"],
            "log": theirs["log"],
            **({"stages": theirs["stages"], "chunks": theirs["chunks"]} if "chunks" in theirs else {}),
        },
        "comparison": comparison,
        "clean": {"tfrobust": ours["clean"].astype(int).tolist(), "reference": theirs["clean"].astype(int).tolist(),
                  "disagreements": np.flatnonzero(ours["clean"] != theirs["clean"]).tolist()},
        "robust": {"tfrobust": ours["robust"].astype(int).tolist(),
                   "reference": theirs["robust"].astype(int).tolist()},
        "tfrobust": {"attack": ours["attack"], "after": ours["after"], "warnings": ours["warnings"],
                     **({"stages": ours["stages"]} if ours.get("stages") else {})},
    }
    print(table(comparison))
    if result["clean"]["disagreements"]:
        print(f"WARNING: the two sides classify clean points differently: {result['clean']['disagreements']}")
    if commit is not None and not commit["installed_matches_commit"]:
        print(f"WARNING: the installed reference differs from commit {commit['commit']}: "
              f"{commit['differing_files']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
