"""Seeds, intervals and significance: comparing recipes that were each run with several seeds.

Robustness differences between training variants are often a fraction of a
point, smaller than the spread between seeds (Suri's note on fixed data
augmentation warns of exactly this). `compare` reads the evaluation JSON of
every run of every group and reports, per metric:

- the mean, the sample standard deviation (ddof 1) and a 95% confidence
  interval of the mean from Student's t with n - 1 degrees of freedom;
- for each group after the first (the baseline), the difference of means
  with a 95% interval and a two-sided p-value. When the two groups hold the
  same seeds (`data.seed` of the recipe each model was trained with, recorded
  in its evaluation JSON or read from the run's recipe.json), runs are paired by seed
  and the test is the paired t-test on the per-seed differences: runs with
  the same seed share the initial weights and the data order, so pairing
  removes that variance. Otherwise it is Welch's unequal-variance t-test.

"Significant" means p < 0.05 for that one comparison; with many metrics and
rows, some will pass by chance (no multiple-comparison correction is made,
and the table says so).
"""

import glob
import json
import math
import os
import warnings

import numpy as np

ALPHA = 0.05


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a, b, x):
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t, df):
    """Two-sided tail probability P(|T| >= |t|) of Student's t with `df` degrees of freedom."""
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p, df):
    """The p-quantile (p in (0.5, 1)) of Student's t, by bisection on `t_sf2`."""
    target = 2.0 * (1.0 - p)
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean_interval(values, confidence=0.95):
    """(mean, sample std, (low, high)) with a Student-t interval; a single value has no interval."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), (float("nan"), float("nan"))
    std = float(v.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2.0, v.size - 1) * std / math.sqrt(v.size)
    return mean, std, (mean - half, mean + half)


def difference(a, b, seeds_a=None, seeds_b=None):
    """Mean of `b` minus mean of `a`, its 95% interval, p-value and test name.

    Paired by seed when both seed lists are given and hold the same seeds;
    Welch's t-test otherwise. With zero spread (every paired difference the
    same, or both groups constant: common with 2-3 seeds and accuracies on a
    0.1-point grid) the t statistic is undefined, and no test is reported
    rather than p = 0.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if seeds_a is not None and seeds_b is not None and sorted(seeds_a) == sorted(seeds_b) and len(a) >= 2:
        order_a, order_b = np.argsort(seeds_a), np.argsort(seeds_b)
        d = b[order_b] - a[order_a]
        mean, std, ci = mean_interval(d)
        se = std / math.sqrt(d.size)
        if se < _ZERO_SPREAD:
            return _no_spread(mean, d.size)
        return {"diff": mean, "ci95": list(ci), "p": t_sf2(mean / se, d.size - 1), "test": "paired t"}
    if len(a) < 2 or len(b) < 2:
        return {"diff": float(b.mean() - a.mean()), "ci95": [float("nan")] * 2, "p": float("nan"),
                "test": "no test: fewer than 2 runs"}
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    diff = float(b.mean() - a.mean())
    if se < _ZERO_SPREAD:
        return _no_spread(diff, min(a.size, b.size))
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t_quantile(0.975, df) * se
    return {"diff": diff, "ci95": [diff - half, diff + half], "p": t_sf2(diff / se, df), "test": "Welch t"}


# Accuracies are multiples of 1/n: differences equal up to float rounding (0.463 - 0.505 vs 0.456 - 0.498) are equal.
_ZERO_SPREAD = 1e-9


def _no_spread(diff, n):
    return {"diff": float(diff), "ci95": [float("nan")] * 2, "p": float("nan"),
            "test": f"no test: zero spread over {n} runs"}


def _metric_key(result):
    return f"{result['attack']} {result['norm']} {result['eps']:.6g}"


def load_run(path):
    """(metrics {name: accuracy}, seed or None) of a run directory or an evaluation JSON file.

    A run directory must hold `eval.json` (`tfrobust eval RUN --json RUN/eval.json`).
    """
    run_dir = path if os.path.isdir(path) else os.path.dirname(path)
    eval_file = os.path.join(path, "eval.json") if os.path.isdir(path) else path
    if not os.path.exists(eval_file):
        raise FileNotFoundError(f"No evaluation in {path}: run `tfrobust eval {path} --json {eval_file}` first.")
    with open(eval_file) as f:
        report = json.load(f)
    metrics = {"clean": report["clean_accuracy"]}
    for r in report["results"]:
        metrics[_metric_key(r)] = r["accuracy"]
    # The evaluation itself says how the model was trained (`tfrobust eval` records the run's recipe.json),
    # so evaluations copied out of their runs still pair by seed; older ones rely on the recipe.json beside them.
    recipe_file = os.path.join(run_dir, "recipe.json")
    beside = None
    if os.path.exists(recipe_file):
        with open(recipe_file) as f:
            beside = json.load(f).get("data", {}).get("seed")
    own = report.get("trained_with", {}).get("data", {}).get("seed") if "trained_with" in report else None
    if own is not None and beside is not None and own != beside:
        warnings.warn(f"{eval_file} was made from a model trained with seed {own}, but {recipe_file} says "
                      f"{beside}; using {own}.")
    return metrics, own if own is not None else beside


def expand(patterns):
    """Paths from comma-separated paths or glob patterns, sorted, without duplicates."""
    paths = []
    for pattern in patterns.split(","):
        matches = sorted(glob.glob(pattern.strip())) or [pattern.strip()]
        paths += [m for m in matches if m not in paths]
    return paths


def compare(groups):
    """Summaries of each group and differences from the first.

    Args:
        groups: list of (name, [run directories or eval JSON files]).

    Returns:
        A dict: `metrics` (names present in every run), `groups` {name: {runs,
        seeds, metric: {values, mean, std, ci95}}}, `differences` {name:
        {metric: {diff, ci95, p, test, significant}}} against the first group.
    """
    if not groups:
        raise ValueError("compare needs at least one group of runs.")
    loaded = {}
    for name, paths in groups:
        if not paths:
            raise ValueError(f"Group {name!r} has no runs.")
        loaded[name] = [(p, *load_run(p)) for p in paths]
    metrics = None
    for runs in loaded.values():
        for _, m, _ in runs:
            metrics = [k for k in (metrics or m) if k in m]
    out = {"metrics": metrics, "groups": {}, "differences": {}, "alpha": ALPHA}
    for name, runs in loaded.items():
        g = {"runs": [p for p, _, _ in runs], "seeds": [s for _, _, s in runs]}
        for key in metrics:
            values = [m[key] for _, m, _ in runs]
            mean, std, ci = mean_interval(values)
            g[key] = {"values": values, "mean": mean, "std": std, "ci95": list(ci)}
        out["groups"][name] = g
    base_name = groups[0][0]
    base = out["groups"][base_name]
    seeds_ok = lambda s: all(x is not None for x in s) and len(set(s)) == len(s)  # noqa: E731
    for name, _ in groups[1:]:
        g = out["groups"][name]
        diffs = {}
        for key in metrics:
            pair = seeds_ok(base["seeds"]) and seeds_ok(g["seeds"])
            d = difference(base[key]["values"], g[key]["values"], base["seeds"] if pair else None,
                           g["seeds"] if pair else None)
            d["significant"] = bool(d["p"] < ALPHA) if not math.isnan(d["p"]) else False
            diffs[key] = d
        out["differences"][name] = diffs
    return out


def _label(key):
    """A metric's column header, with radii such as 0.0313725 written k/255 as papers write them."""
    parts = key.split(" ")
    if len(parts) == 3:
        try:
            k = float(parts[2]) * 255
        except ValueError:
            return key
        # Short decimals (0.3, 0.5, 1) stay as they are; only the long ones are fractions of 255.
        if len(parts[2]) > 5 and abs(k - round(k)) < 1e-3:
            return f"{parts[0]} {parts[1]} {round(k)}/255"
    return key


def _pct(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def table(result):
    """Markdown tables: mean +- std [95% CI] per group and metric, then differences from the first group."""
    metrics = result["metrics"]
    labels = [_label(m) for m in metrics]
    lines = ["| group | seeds | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, g in result["groups"].items():
        cells = []
        for key in metrics:
            s = g[key]
            std = "" if math.isnan(s["std"]) else f" ± {_pct(s['std'])}"
            ci = "" if math.isnan(s["ci95"][0]) else f" [{_pct(s['ci95'][0])}, {_pct(s['ci95'][1])}]"
            cells.append(f"{_pct(s['mean'])}{std}{ci}")
        seeds = ",".join(str(s) for s in g["seeds"])
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    if result["differences"]:
        base = next(iter(result["groups"]))
        lines += ["", f"Difference from {base} (points; 95% CI; two-sided p; significant at p < {ALPHA}, "
                      "uncorrected for multiple comparisons):", "",
                  "| group | " + " | ".join(labels) + " |", "|---|" + "---|" * len(metrics)]
        for name, diffs in result["differences"].items():
            cells = []
            for key in metrics:
                d = diffs[key]
                mark = "yes" if d["significant"] else "no"
                if math.isnan(d["p"]):
                    cells.append(f"{100 * d['diff']:+.2f} ({d['test']})")
                    continue
                cells.append(f"{100 * d['diff']:+.2f} [{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}] "
                             f"p={d['p']:.3g} {d['test']}: {mark}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies in %, mean ± sample std [95% Student-t interval of the mean] over seeds."]
    return "\n".join(lines)


__all__ = ["compare", "difference", "expand", "load_run", "mean_interval", "t_quantile", "t_sf2", "table"]
