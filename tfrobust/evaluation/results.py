"""The outcome of an evaluation: per-example results per attack, tables with 95% Wilson intervals, JSON."""

import dataclasses
import math
from typing import List

import numpy as np

WORST_CASE = "worst_case"


def in_255ths(eps):
    """Whether eps is a whole number of 255ths (below 1), the unit image radii are usually given in."""
    k = eps * 255
    return eps < 1 and round(k) > 0 and abs(k - round(k)) < 1e-6


def format_eps(eps, reference=None):
    """eps as k/255 when the reference radius (default: eps itself) is a whole number of 255ths."""
    if in_255ths(eps if reference is None else reference) and in_255ths(eps):
        return f"{round(eps * 255)}/255"
    return f"{eps:.4g}"


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
            "\n".join([f"n = {self.n} examples; accuracy in %, 95% Wilson interval in brackets.",
                       *_budget_notes(self.results)]),
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


#: AutoAttack's standard budget (Croce & Hein 2020): iterations of APGD and FAB, their targets, Square's queries.
_AUTOATTACK_BUDGET = (("steps", 100, "iterations"), ("target_classes", 9, "targets"), ("queries", 5000, "queries"))


def _budget_notes(results):
    """One line per AutoAttack result run below the standard budget, which its name alone would not tell."""
    notes = {}
    for r in results:
        if "components" not in r.params or "version" not in r.params:
            continue
        # "rand" has no Square and no targeted attacks: only its iterations count.
        keys = _AUTOATTACK_BUDGET[:1] if r.params["version"] == "rand" else _AUTOATTACK_BUDGET
        short = [(r.params.get(k), standard, what) for k, standard, what in keys if r.params.get(k, standard) < standard]
        if short:
            notes[r.attack] = (f"{r.attack}: a reduced budget, {', '.join(f'{v} {w}' for v, _, w in short)} (standard: "
                               f"{', '.join(f'{s} {w}' for _, s, w in short)}); its accuracy may be above standard "
                               "AutoAttack's.")
    return list(notes.values())


def _fmt_eps(e):
    if len(f"{e:g}") <= 5:
        return f"{e:g}"
    for d in (255, 64):
        if abs(e * d - round(e * d)) < 1e-6 and round(e * d) != 0 and e < 1:
            return f"{round(e * d)}/{d}"
    return f"{e:g}"


def _cell(acc, lo, hi):
    return f"{100 * acc:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"
