"""Robust accuracy under a set of attacks, per example, with tables and JSON."""

import dataclasses
import math
import sys
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from tfrobust.data import pipelines

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
        }


@dataclasses.dataclass
class Report:
    """The outcome of `evaluate`: clean accuracy and one `Result` per attack and eps."""

    clean_correct: np.ndarray
    results: List[Result]
    warnings: List[str] = dataclasses.field(default_factory=list)
    source: str = ""

    @property
    def n(self):
        return int(self.clean_correct.size)

    @property
    def clean_accuracy(self):
        return float(np.mean(self.clean_correct))

    def accuracy(self, attack, eps=None):
        """Robust accuracy of the named attack (at `eps`, if several were run)."""
        for r in self.results:
            if r.attack == attack and (eps is None or math.isclose(r.eps, eps)):
                return r.accuracy
        raise KeyError(f"No result for attack={attack!r}, eps={eps}")

    def to_json(self):
        return {
            "clean_accuracy": self.clean_accuracy,
            "clean_ci95": list(wilson_interval(int(self.clean_correct.sum()), self.n)),
            "n": self.n,
            "data": self.source,
            "results": [r.to_json() for r in self.results],
            "warnings": list(self.warnings),
        }

    def table(self):
        """A text table: rows are attacks, columns eps, cells accuracy in % with a 95% CI."""
        eps_values = sorted({r.eps for r in self.results})
        names = list(dict.fromkeys(r.attack for r in self.results))
        lo, hi = wilson_interval(int(self.clean_correct.sum()), self.n)
        header = ["attack"] + [f"eps={_fmt_eps(e)}" for e in eps_values]
        rows = [["clean"] + [_cell(self.clean_accuracy, lo, hi)] * len(eps_values)]
        for name in names:
            row = [name]
            for e in eps_values:
                match = [r for r in self.results if r.attack == name and math.isclose(r.eps, e)]
                if match:
                    r = match[0]
                    row.append(_cell(r.accuracy, *wilson_interval(int(r.robust.sum()), r.robust.size)))
                else:
                    row.append("-")
            rows.append(row)
        widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
        line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
        out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in rows]
        out.append(f"n = {self.n} examples; accuracy in %, 95% Wilson interval in brackets.")
        if self.source:
            out.append(f"data: {self.source}")
        return "\n".join(out)


def _fmt_eps(e):
    for d in (255, 64):
        if abs(e * d - round(e * d)) < 1e-6 and round(e * d) != 0 and e < 1:
            return f"{round(e * d)}/{d}"
    return f"{e:g}"


def _cell(acc, lo, hi):
    return f"{100 * acc:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


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
):
    """Evaluates clean and robust accuracy, keeping per-example outcomes.

    An example counts as robust to an attack if it is classified correctly on
    the clean input and on the attack's output. The "worst_case" row holds, per
    eps, the examples that survive every attack run at that eps (the
    per-example worst case, as AutoAttack reports it).

    Args:
        classifier: `keras.Model` mapping float32 [0, 1] NHWC images to logits.
        images: uint8 or float32 [0, 1] array `[N, H, W, C]`.
        labels: int array `[N]`.
        attacks: list of attacks (e.g. `PGD`), each with its own eps.
        batch_size: examples per attack call.
        seed: global seed for the attacks' random starts (per element, so
            results do not depend on the batch size).
        worst_case: add the per-example worst case over all attacks per eps.
        verbose: "auto" (a progress bar on a terminal, one line otherwise),
            1, 2 or 0.
        source: a description of the data, for the report.

    Returns:
        A `Report`.
    """
    labels = np.asarray(labels)
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
    dataset = pipelines.eval_dataset(images, labels, batch_size=batch_size, seed=seed)
    predict = tf.function(lambda x: tf.argmax(classifier(x, training=False), -1))
    runners = [
        tf.function(lambda x, y, s, a=a: a(classifier, x, y, s), reduce_retracing=True)
        for a in attacks
    ]
    clean, robust = [], [[] for _ in attacks]
    n_batches = int(math.ceil(len(labels) / batch_size))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    bar = keras.utils.Progbar(n_batches, verbose=verbose, unit_name="batch") if verbose else None
    for features, y in dataset:
        x, s = features["image"], features["seed"]
        correct = (predict(x).numpy() == y.numpy())
        clean.append(correct)
        for i, run in enumerate(runners):
            x_adv = run(x, y, s)
            robust[i].append(correct & (predict(x_adv).numpy() == y.numpy()))
        if bar is not None:
            bar.add(1)
    clean = np.concatenate(clean)
    results = [
        Result(a.name, a.norm, a.eps, np.concatenate(r), a.get_config())
        for a, r in zip(attacks, robust)
    ]
    if worst_case and len(attacks) > 1:
        for eps in sorted({r.eps for r in results}):
            group = [r for r in results if math.isclose(r.eps, eps)]
            if len(group) > 1:
                results.append(
                    Result(
                        WORST_CASE,
                        group[0].norm,
                        eps,
                        np.logical_and.reduce([r.robust for r in group]),
                        {"of": [r.attack for r in group]},
                    )
                )
    return Report(clean_correct=clean, results=results, source=source)


__all__ = ["Report", "Result", "WORST_CASE", "evaluate", "wilson_interval"]
