"""Robust accuracy under a set of attacks, per example, with tables and JSON."""

import dataclasses
import json
import math
import zlib
from typing import List

import keras
import numpy as np
import tensorflow as tf

from tfrobust import progress, validation
from tfrobust.data import pipelines
from tfrobust.data.batch_store import BatchStore

WORST_CASE = "worst_case"


def wilson_interval(successes, n, z=1.959963984540054):
    """The 95% Wilson score interval for a binomial proportion.

    Wilson, "Probable inference, the law of succession, and statistical
    inference" (1927). Unlike the normal approximation it stays inside [0, 1]
    and behaves at accuracies near 0 or 1, which robust accuracy often is.

    Returns:
        (low, high), floats in [0, 1].
    """
    if n <= 0:
        raise ValueError(f"n must be > 0. Received: n={n}")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclasses.dataclass
class Result:
    """Robust accuracy of one attack at one eps."""

    attack: str
    norm: str
    eps: float
    robust: np.ndarray  # bool [n]: correct on the clean AND the adversarial input
    params: dict
    extra: dict = dataclasses.field(default_factory=dict)  # ssim_distance, max_distance, after

    @property
    def accuracy(self):
        return float(np.mean(self.robust))

    def to_json(self):
        n = int(self.robust.size)
        return {
            "attack": self.attack,
            "norm": self.norm,
            "eps": float(self.eps),
            "accuracy": self.accuracy,
            "ci95": list(wilson_interval(int(self.robust.sum()), n)),
            "params": self.params,
            **self.extra,
        }


@dataclasses.dataclass
class Report:
    """The outcome of `evaluate`: clean accuracy and one `Result` per attack and eps."""

    clean_correct: np.ndarray
    results: List[Result]
    warnings: List[str] = dataclasses.field(default_factory=list)
    source: str = ""
    # Which gradient-masking checks ran ("quick", "full" or "off"), so that "no warnings" can be told from "not checked".
    checks: str = "off"

    @property
    def n(self):
        return int(self.clean_correct.size)

    @property
    def clean_accuracy(self):
        return float(np.mean(self.clean_correct))

    def result(self, attack, eps=None):
        """The `Result` of the named attack (at `eps`, if several were run)."""
        for r in self.results:
            if r.attack == attack and (eps is None or math.isclose(r.eps, eps)):
                return r
        raise KeyError(f"No result for attack={attack!r}, eps={eps}")

    def accuracy(self, attack, eps=None):
        """Robust accuracy of the named attack (at `eps`, if several were run)."""
        return self.result(attack, eps).accuracy

    def to_json(self):
        return {
            "clean_accuracy": self.clean_accuracy,
            "clean_ci95": list(wilson_interval(int(self.clean_correct.sum()), self.n)),
            "n": self.n,
            "data": self.source,
            "results": [r.to_json() for r in self.results],
            "warnings": list(self.warnings),
            "checks": self.checks,
        }

    def _columns(self):
        # One column per threat model: (norm, eps) in order of appearance,
        # eps ascending within a norm.
        keys = list(dict.fromkeys((r.norm, round(r.eps, 12)) for r in self.results))
        order = list(dict.fromkeys(k[0] for k in keys))
        return sorted(keys, key=lambda k: (order.index(k[0]), k[1]))

    def _grid(self, cell, clean_cell, footer, with_warnings=True):
        columns = self._columns()
        several_norms = len({c[0] for c in columns}) > 1
        header = ["attack"] + [
            (f"{norm} " if several_norms else "") + f"eps={_fmt_eps(e)}" for norm, e in columns
        ]
        if not columns:
            # No attack was run (clean accuracy only).
            header.append("accuracy")
        rows = [["clean"] + [clean_cell] * max(len(columns), 1)] if clean_cell is not None else []
        for name in dict.fromkeys(r.attack for r in self.results):
            if all(cell(r) == "-" for r in self.results if r.attack == name):
                continue  # e.g. worst_case in the 1-SSIM table
            row = [name]
            for norm, e in columns:
                match = [r for r in self.results
                         if r.attack == name and r.norm == norm and math.isclose(r.eps, e)]
                row.append(cell(match[0]) if match else "-")
            rows.append(row)
        widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
        line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
        out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in rows]
        out.append(footer)
        if self.source:
            out.append(f"data: {self.source}")
        for w in self.warnings if with_warnings else ():
            out.append(f"WARNING: {w}")
        return "\n".join(out)

    def table(self):
        """A text table: rows are attacks, columns threat models, cells accuracy in % with a 95% CI."""
        lo, hi = wilson_interval(int(self.clean_correct.sum()), self.n)
        return self._grid(
            lambda r: _cell(r.accuracy, *wilson_interval(int(r.robust.sum()), r.robust.size)),
            _cell(self.clean_accuracy, lo, hi),
            f"n = {self.n} examples; accuracy in %, 95% Wilson interval in brackets.",
        )

    def ssim_table(self):
        """A text table of the mean 1-SSIM between clean and adversarial images, per attack.

        The report's warnings are in `table()` only, so that printing both shows each once.
        """
        return self._grid(
            lambda r: f"{r.extra['ssim_distance']:.4f}" if "ssim_distance" in r.extra else "-",
            None,
            f"mean 1-SSIM over the {int(self.clean_correct.sum())} correctly classified of "
            f"n = {self.n} examples (tfrobust.evaluation.ssim).",
            with_warnings=False,
        )


def _fmt_eps(e):
    if len(f"{e:g}") <= 5:
        return f"{e:g}"
    for d in (255, 64):
        if abs(e * d - round(e * d)) < 1e-6 and round(e * d) != 0 and e < 1:
            return f"{round(e * d)}/{d}"
    return f"{e:g}"


def _cell(acc, lo, hi):
    return f"{100 * acc:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def weights_fingerprint(classifier):
    """A short hash of `classifier`'s weights (its path for exports), for resumable state."""
    # Ties a resumable evaluation's saved batches to the weights that made
    # them: continuing with another model would mix two models' outcomes.
    weights = getattr(classifier, "weights", None)
    if not weights:
        return repr(getattr(classifier, "path", type(classifier).__name__))
    crc = 0
    for w in weights:
        crc = zlib.crc32(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes(), crc)
    return f"{len(weights)}:{crc:08x}"


def _batch_fn(classifier, attacks):
    """`(x, y, seeds) -> dict of per-example outcomes`, for one (per-replica) batch."""
    from tfrobust.attacks import projections
    from tfrobust.attacks.autoattack import AutoAttack
    from tfrobust.evaluation.ssim import ssim_distance

    def correct(x, y):
        return tf.equal(tf.argmax(classifier(x, training=False), -1, output_type=tf.int64), y)

    def fn(x, y, seeds):
        y = tf.cast(y, tf.int64)
        clean = correct(x, y)
        out = {"clean": clean}
        for i, attack in enumerate(attacks):
            if isinstance(attack, AutoAttack):
                x_adv, after = attack.run(classifier, x, y, seeds, robust=clean)
                out[f"after_{i}"] = tf.stack(after, axis=1)
            else:
                # Only correctly classified points are attacked: the others
                # count as broken already, and attacks are per element, so
                # leaving them out changes no result.
                idx = tf.where(clean)

                def attack_subset(attack=attack, idx=idx):
                    return attack(classifier, tf.gather_nd(x, idx), tf.gather_nd(y, idx),
                                  tf.gather_nd(seeds, idx))

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
            if attack.norm in projections.THREAT_MODELS:
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
    attacks = list(attacks)
    state = _State(state_dir, {
        "model": weights_fingerprint(classifier),
        "n": int(len(labels)),
        "labels_crc": zlib.crc32(labels.astype(np.int64).tobytes()),
        "images_crc": zlib.crc32(np.ascontiguousarray(images).tobytes()),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "attacks": [json.loads(json.dumps(a.get_config())) for a in attacks],
    })
    done = state.finished()
    dataset = pipelines.eval_dataset(images, labels, batch_size=batch_size, seed=seed)
    dataset = dataset.skip(len(done))
    spec = (
        tf.TensorSpec([None, *np.shape(images)[1:]], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([None, 2], tf.int32),
    )
    batch_fn = _batch_fn(classifier, attacks)
    step = tf.function(batch_fn, input_signature=spec)
    if strategy is not None:
        dataset = strategy.experimental_distribute_dataset(dataset)

        @tf.function
        def distributed_step(features, y):
            def numeric(x, y, seeds):
                # Collective gathers take numbers, not booleans.
                out = batch_fn(x, y, seeds)
                return {k: tf.cast(v, tf.int32) if v.dtype == tf.bool else v for k, v in out.items()}

            out = strategy.run(numeric, args=(features["image"], y, features["seed"]))
            return {k: strategy.gather(v, axis=0) for k, v in out.items()}

    n_batches = int(math.ceil(len(labels) / batch_size))
    outcomes = list(done)
    label = "evaluation: " + ", ".join(dict.fromkeys(a.name for a in attacks)) if attacks else "evaluation: clean"
    with progress.Progress(n_batches, label, "batch", done=len(done), verbose=verbose) as bar:
        for features, y in dataset:
            if strategy is None:
                out = step(features["image"], y, features["seed"])
            else:
                out = distributed_step(features, y)
            out = {k: v.numpy() for k, v in out.items()}
            state.save(len(outcomes), out)
            outcomes.append(out)
            bar.update(len(outcomes))

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
    report = Report(clean_correct=clean, results=results, source=source, warnings=warnings)
    if checks not in (False, "off"):
        from tfrobust.evaluation import masking

        report.warnings.extend(masking.run_checks(
            classifier, images, labels, attacks, report, seed=seed, quick=checks == "quick", verbose=verbose))
        report.checks = "quick" if checks == "quick" else "full"
    return report


__all__ = ["Report", "Result", "WORST_CASE", "evaluate", "wilson_interval"]
