"""Robust accuracy under a set of attacks, per example, with tables and JSON."""

import contextlib
import json
import logging
import math
import os
import time
import zlib

import numpy as np
import tensorflow as tf

from tfrobust import progress, validation
from tfrobust.attacks import base
from tfrobust.data import pipelines
from tfrobust.evaluation.results import WORST_CASE, Report, Result, wilson_interval
from tfrobust.stores import BatchStore, weights_fingerprint


def _batch_fn(classifier, attacks, call=None):
    """`(x, y, seeds) -> dict of per-example outcomes`, for one (per-replica) batch.

    `call(attack, x, y, seeds)` runs an attack (or an AutoAttack component) on
    the points that reach it; by default `attack(classifier, x, y, seeds)`.
    A `call` means the batch runs eagerly, each attack compiled by `call`.
    """
    from tfrobust.attacks import projections
    from tfrobust.attacks.autoattack import AutoAttack
    from tfrobust.evaluation.ssim import ssim_distance

    def correct(x, y):
        return tf.equal(tf.argmax(classifier(x, training=False), -1, output_type=tf.int64), y)

    if call is not None:
        # Run eagerly between attacks: the classification compiled too, as inside a traced step. (Not under a
        # strategy: a nested function there breaks synchronized BatchNorm's all-reduce.)
        correct = base.compiled(correct, reduce_retracing=True)

    call = call or (lambda attack, *args: attack(classifier, *args))

    def fn(x, y, seeds):
        y = tf.cast(y, tf.int64)
        clean = correct(x, y)
        out = {"clean": clean}
        for i, attack in enumerate(attacks):
            if isinstance(attack, AutoAttack):
                x_adv, after = attack.run(classifier, x, y, seeds, robust=clean, call=call)
                out[f"after_{i}"] = tf.stack(after, axis=1)
            else:
                # Only correctly classified points are attacked: the others
                # count as broken already, and attacks are per element, so
                # leaving them out changes no result.
                idx = tf.where(clean)

                def attack_subset(attack=attack, idx=idx):
                    return call(attack, tf.gather_nd(x, idx), tf.gather_nd(y, idx), tf.gather_nd(seeds, idx))

                adv = tf.cond(tf.size(idx) > 0, attack_subset,
                              lambda: tf.zeros(tf.concat([[0], tf.shape(x)[1:]], 0), x.dtype))
                x_adv = tf.tensor_scatter_nd_update(x, idx, adv)
            # A non-finite adversarial image (NaN gradients) is a failed
            # attack, not a broken point: argmax of NaN logits is arbitrary.
            finite = tf.reduce_all(tf.math.is_finite(x_adv), axis=[1, 2, 3])
            out[f"nonfinite_{i}"] = tf.logical_not(finite)
            x_adv = tf.where(finite[:, None, None, None], x_adv, x)
            out[f"robust_{i}"] = tf.logical_and(clean, correct(x_adv, y))
            out[f"ssim_{i}"] = ssim_distance(x, x_adv)
            if attack.norm in projections.NORMS:
                out[f"dist_{i}"] = projections.distance(x_adv, x, attack.norm)
        return out

    return fn


def _upgrade(saved):
    from tfrobust.attacks import registry

    return dict(saved, attacks=[registry.upgrade_config(c) for c in saved.get("attacks", [])])


class _State:
    """Finished batches on disk, so that an interrupted evaluation continues where it stopped."""

    def __init__(self, directory, fingerprint):
        self.store = None if directory is None else BatchStore(directory, fingerprint, "evaluation",
                                                                manifest="state.json", upgrade=_upgrade)

    def finished(self):
        """The outcomes of the batches finished so far, in order."""
        if self.store is None:
            return []
        return [self.store.read(i) for i in range(self.store.done())]

    def save(self, index, outcome):
        if self.store is not None:
            self.store.write(index, **outcome)


def _fingerprint(classifier, images, labels, batch_size, seed, attack_configs):
    """What an evaluation's saved batches are tied to: the weights, the data, the batching and the attacks."""
    return {
        "model": weights_fingerprint(classifier),
        "n": int(len(labels)),
        "labels_crc": zlib.crc32(labels.astype(np.int64).tobytes()),
        "images_crc": zlib.crc32(np.ascontiguousarray(images).tobytes()),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "attacks": [json.loads(json.dumps(c)) for c in attack_configs],
    }


def saved_outcomes(state_dir, classifier, images, labels):
    """The per-example outcomes that an `evaluate(..., state_dir=...)` saved, finished or not.

    Lets another tool use an evaluation that took hours (the reference
    AutoAttack cross-check compares its per-point outcomes) without running
    it again. The state must belong to this classifier's weights and these
    images and labels.

    Args:
        state_dir: the evaluation's state directory.
        classifier: the evaluated classifier (its weights are checked).
        images: the evaluated images, uint8 or float32 as they were given to
            `evaluate`; only the first `n` (the state's) are used.
        labels: their labels.

    Returns:
        `(attack_configs, seed, outcomes)`: the attacks' configs as recorded,
        the evaluation's seed, and a dict of arrays over the examples of the
        finished batches, in order: "clean" (bool), "robust_{i}" (bool, for
        attack i), "after_{i}" (bool `[n, components]`, for an AutoAttack)
        and the rest that `evaluate` keeps.

    Raises:
        FileNotFoundError: no evaluation state in `state_dir`.
        ValueError: the state belongs to other weights, images or labels, or
            fewer images are given than it covers.
    """
    path = os.path.join(state_dir, "state.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No evaluation state in {state_dir} (no state.json).")
    with open(path) as f:
        saved = _upgrade(json.load(f))
    n = saved.get("n", 0)
    if len(labels) < n:
        raise ValueError(f"The evaluation state in {state_dir} covers {n} images; {len(labels)} were given.")
    images, labels, batch_size = _checked_inputs(classifier, images[:n], labels[:n], saved["batch_size"], "off")
    state = _State(state_dir, _fingerprint(classifier, images, labels, batch_size, saved["seed"], saved["attacks"]))
    done = state.finished()
    keys = done[0].keys() if done else ()
    outcomes = {k: np.concatenate([o[k] for o in done]) for k in keys}
    for k, v in outcomes.items():
        if k == "clean" or k.split("_")[0] in ("robust", "after", "nonfinite"):
            outcomes[k] = v.astype(bool)
    return saved["attacks"], int(saved["seed"]), outcomes


def _checked_inputs(classifier, images, labels, batch_size, checks):
    """`evaluate`'s arguments checked: images as a [0, 1] array, labels as integer classes of the classifier."""
    if checks not in (True, False, "full", "quick", "off"):
        raise ValueError(f"checks must be 'full', 'quick' or 'off'. Received: checks={checks!r}")
    # Empty, NaN or 0-255 float images would end in an IndexError or in numbers about nothing.
    images = validation.check_image_array(images, "images")
    batch_size = validation.check_int("batch_size", batch_size, minimum=1)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices. Received: labels.dtype={labels.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            "labels must be a vector with one label per image. "
            f"Received: labels.shape={labels.shape}, images.shape={np.shape(images)}"
        )
    num_classes = int(classifier.output_shape[-1])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}). "
            f"Received: labels min={labels.min()}, max={labels.max()}"
        )
    return images, labels, batch_size


def _results(outcomes, attacks, worst_case):
    """(clean bool [N], a `Result` per attack plus the worst cases, warnings) from the batches' outcomes."""
    def cat(key):
        return np.concatenate([o[key] for o in outcomes]) if outcomes else np.zeros([0])

    clean = cat("clean").astype(bool)
    results, warnings = [], []
    for i, a in enumerate(attacks):
        robust = cat(f"robust_{i}").astype(bool)
        params = a.get_config()
        extra = {"ssim_distance": float(np.mean(cat(f"ssim_{i}")[clean])) if clean.any() else 0.0}
        if f"dist_{i}" in outcomes[0]:
            extra["max_distance"] = float(np.max(cat(f"dist_{i}"), initial=0.0))
        if f"after_{i}" in outcomes[0]:
            after = cat(f"after_{i}").astype(bool)
            names = [c.name for c in a.components]
            extra["after"] = {name: float(np.mean(after[:, j])) for j, name in enumerate(names)}
        nonfinite = int(cat(f"nonfinite_{i}").sum())
        if nonfinite:
            warnings.append(
                f"{a.name} at {a.norm} eps={a.eps:g} produced non-finite images for {nonfinite} "
                "examples; they were counted as not broken. The model's gradients are not finite "
                "there: a robust accuracy measured this way is unverified."
            )
        results.append(Result(a.name, a.norm, a.eps, robust, params, extra))
    if worst_case and len(attacks) > 1:
        groups = {}
        for r in list(results):
            groups.setdefault((r.norm, round(r.eps, 12)), []).append(r)
        for (norm, _), group in groups.items():
            if len(group) > 1:
                results.append(
                    Result(
                        WORST_CASE,
                        norm,
                        group[0].eps,
                        np.logical_and.reduce([r.robust for r in group]),
                        {"of": [r.attack for r in group]},
                    )
                )
    return clean, results, warnings


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's warning about a function traced again and again.

    The warning is meant for a `tf.function` created in a loop by mistake;
    evaluation creates one per attack on purpose (a sweep over radii makes
    many), so there it would only send the user looking for a bug.
    """

    def filter(self, record):
        message = record.getMessage()
        # Only evaluation's own functions: a model of the user's that retraces is worth the warning.
        return not ("triggered tf.function retracing" in message and "_step_fn.<locals>.call" in message)


@contextlib.contextmanager
def _expected_retracing():
    logger = tf.get_logger()
    quiet = _ExpectedRetracing()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


# The dicts of the active `timed_attacks` blocks.
_TIMERS = []


@contextlib.contextmanager
def timed_attacks():
    """Wall time of each attack that `evaluate` runs on one device, by name, inside the block.

    AutoAttack's components count apart (`apgd-ce`, `apgd-t`, `fab-t`, `square`),
    each target and restart added to its component. Per name: `seconds` (all
    calls, tracing included), `calls`, `points` (images attacked, summed over
    calls) and `first_call_seconds` (the call that traced the function, which
    carries the tracing and graph optimisation). Evaluations under a strategy
    run one compiled step and are not timed by attack.

    Yields:
        dict: name -> the figures above, filled as the attacks run.
    """
    times = {}
    _TIMERS.append(times)
    try:
        yield times
    finally:
        _TIMERS.remove(times)


def _record_time(name, seconds, points, first):
    for times in _TIMERS:
        entry = times.setdefault(name, {"seconds": 0.0, "calls": 0, "points": 0, "first_call_seconds": 0.0})
        entry["seconds"] += seconds
        entry["calls"] += 1
        entry["points"] += points
        if first:
            entry["first_call_seconds"] += seconds


def _step_fn(classifier, attacks, image_shape, strategy):
    """`(features, y) -> outcomes` of one global batch.

    On one device: eager between attacks, each attack compiled on its own.
    Under a strategy: one compiled step, the batch split over the replicas.
    """
    spec = (
        tf.TensorSpec([None, *image_shape], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([None, 2], tf.int32),
    )
    if strategy is None:
        # Eager between attacks, each attack compiled on its own: an AutoAttack component that no point
        # reaches (an undefended model, broken by APGD-CE) is never traced. Traced once per evaluation.
        # The runs of one component (AutoAttack's targets and restarts, `base.Run`) share one function, the run
        # an argument: traced once, not once per run.
        compiled = {}

        def call(attack, x, y, seeds):
            component, run = (attack.attack, [attack.target, attack.restart]) if isinstance(attack, base.Run) else (
                attack, None)
            key = (type(component).__qualname__, run is None,
                   json.dumps(component.get_config(), sort_keys=True, default=str))
            first = key not in compiled
            if first:
                if run is None:
                    compiled[key] = base.compiled(lambda x, y, seeds: component(classifier, x, y, seeds),
                                                  input_signature=spec)
                else:
                    compiled[key] = base.compiled(
                        lambda x, y, seeds, run: component.call_runs(classifier, x, y, seeds, only=(run[0], run[1])),
                        input_signature=(*spec, tf.TensorSpec([2], tf.int32)))
            args = (x, tf.cast(y, tf.int64), seeds) + (() if run is None else (tf.constant(run, tf.int32),))
            start = time.perf_counter()
            # Eager execution on one device is synchronous: the outputs exist when the call returns.
            out = compiled[key](*args)
            _record_time(attack.name, time.perf_counter() - start, int(x.shape[0]), first)
            return out

        batch_fn = _batch_fn(classifier, attacks, call)
        return lambda features, y: batch_fn(features["image"], y, features["seed"])
    batch_fn = _batch_fn(classifier, attacks)

    @tf.function
    def distributed_step(features, y):
        def numeric(x, y, seeds):
            # Collective gathers take numbers, not booleans.
            out = batch_fn(x, y, seeds)
            return {k: tf.cast(v, tf.int32) if v.dtype == tf.bool else v for k, v in out.items()}

        out = strategy.run(numeric, args=(features["image"], y, features["seed"]))
        return {k: strategy.gather(v, axis=0) for k, v in out.items()}

    return distributed_step


def _run_batches(classifier, images, labels, attacks, batch_size, seed, strategy, state, done, verbose):
    """The per-example outcomes of every batch: those `done` already, then the rest, each saved to `state`."""
    dataset = pipelines.eval_dataset(images, labels, batch_size=batch_size, seed=seed).skip(len(done))
    if strategy is not None:
        dataset = strategy.experimental_distribute_dataset(dataset)
    step = _step_fn(classifier, attacks, np.shape(images)[1:], strategy)
    n_batches = int(math.ceil(len(labels) / batch_size))
    outcomes = list(done)
    label = "evaluation: " + ", ".join(dict.fromkeys(a.name for a in attacks)) if attacks else "evaluation: clean"
    with progress.Progress(n_batches, label, "batch", done=len(done), verbose=verbose) as bar, _expected_retracing():
        for features, y in dataset:
            out = {k: v.numpy() for k, v in step(features, y).items()}
            state.save(len(outcomes), out)
            outcomes.append(out)
            bar.update(len(outcomes))
    return outcomes


def evaluate(
    classifier,
    images,
    labels,
    attacks,
    *,
    batch_size=500,
    seed=0,
    worst_case=True,
    verbose="auto",
    source="",
    strategy=None,
    state_dir=None,
    checks=True,
):
    """Evaluates clean and robust accuracy, keeping per-example outcomes.

    An example counts as robust to an attack if it is classified correctly on
    the clean input and on the attack's output; only correctly classified
    examples are attacked. The "worst_case" row holds, per threat model, the
    examples that survive every attack run at it (the per-example worst case,
    as AutoAttack reports it). Per attack the report also keeps the mean
    1-SSIM between clean and adversarial images over the attacked examples
    (Prabhu et al., arXiv 1907.09061, Table 2; see `evaluation.ssim`) and the
    largest distance of any adversarial example from its clean image.

    Args:
        classifier: `keras.Model` mapping float32 [0, 1] NHWC images to logits.
        images: uint8 or float32 [0, 1] array `[N, H, W, C]`.
        labels: int array `[N]`.
        attacks: list of attacks (e.g. `PGD`, `APGD`, `AutoAttack`), each
            with its own eps.
        batch_size: examples per step (the global batch under a strategy).
        seed: global seed for the attacks' random starts (per element, so
            results depend neither on the batch size nor on the replicas).
        worst_case: add the per-example worst case over attacks per threat model.
        verbose: "auto" (a progress bar on a terminal, a line every 30 s
            otherwise: `tfrobust.progress`), 1 (bar), 2 (lines) or 0.
        source: a description of the data, for the report.
        strategy: optional `tf.distribute.Strategy`: each global batch is
            split over the replicas and the outcomes gathered in order.
        state_dir: optional directory where finished batches are saved; an
            evaluation started again with the same directory skips them.
        checks: the gradient-masking checks (`evaluation.masking`), whose
            findings go into `Report.warnings`: "full" (or True), "quick"
            (fewer points and steps) or "off" (or False).

    Returns:
        A `Report`.

    Raises:
        ValueError: empty images, images that are not finite or outside
            [0, 1], labels that do not match them, or a batch size below 1.
        TypeError: images neither uint8 nor float, labels not integers.
    """
    images, labels, batch_size = _checked_inputs(classifier, images, labels, batch_size, checks)
    attacks = list(attacks)
    state = _State(state_dir, _fingerprint(classifier, images, labels, batch_size, seed,
                                           [a.get_config() for a in attacks]))
    done = state.finished()
    outcomes = _run_batches(classifier, images, labels, attacks, batch_size, seed, strategy, state, done, verbose)
    clean, results, warnings = _results(outcomes, attacks, worst_case)
    report = Report(clean_correct=clean, results=results, source=source, warnings=warnings)
    if checks not in (False, "off"):
        from tfrobust.evaluation import masking

        report.warnings.extend(masking.run_checks(
            classifier, images, labels, attacks, report, seed=seed, quick=checks == "quick", verbose=verbose))
        report.checks = "quick" if checks == "quick" else "full"
    return report


__all__ = ["Report", "Result", "WORST_CASE", "evaluate", "saved_outcomes", "wilson_interval"]
