"""Training curves of several runs: robust overfitting, measured rather than eyeballed.

Rice, Wong & Kolter, "Overfitting in adversarially robust deep learning"
(arXiv 2002.11569), showed that the robust test accuracy of adversarial
training peaks and then falls while the training accuracy keeps rising; Gowal
et al. (arXiv 2110.09468) add generated data to counter it. `summarise` reads
the `history.csv` that every `tfrobust train` run writes and reports, per
group of runs (one group per recipe, one run per seed), the per-epoch mean of
a metric, its best epoch, its final value and the gap between the two: the
robust-overfitting gap, when the metric is the robust validation accuracy.

The validation set of a run is the first `train.val_n` test images, so a
"best" epoch picked on it is an optimistic early-stopping figure; the gap is
reported to show overfitting, not to select a model.
"""

import csv
import os

import numpy as np


def _number(text, where):
    if text in (None, "", "NA", "nan"):  # CSVLogger writes NA for a metric that an epoch did not log
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number.") from None


def read_history(path):
    """{column: np.ndarray} of a run directory's `history.csv` (or of the csv file itself), by epoch.

    `epoch` holds the epoch numbers (from 0, as Keras writes them). A missing
    value ("NA", as Keras's CSVLogger writes for a run without validation) is NaN.
    """
    csv_path = os.path.join(path, "history.csv") if os.path.isdir(path) else path
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"No training history at {csv_path}: `tfrobust train` writes RUN/history.csv.")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} has no epochs.")
    by_epoch = {int(_number(r["epoch"], csv_path)): r for r in rows}
    epochs = sorted(by_epoch)
    out = {"epoch": np.asarray(epochs)}
    for c in (c for c in rows[0] if c != "epoch"):
        out[c] = np.asarray([_number(by_epoch[e].get(c), f"{csv_path}, epoch {e}, {c}") for e in epochs])
    return out


def _lower_is_better(metric):
    return "loss" in metric


def summarise(groups, metric="val_robust_accuracy"):
    """Per group of runs: the mean curve of `metric`, its best and final values and the gap.

    Runs are aligned by their epoch numbers; an epoch a run did not log is
    left out of that epoch's mean. A group whose runs end at different epochs
    (some still training) is cut at the last epoch that all of them reached,
    and says so (`cut_from`), so that its final value is not an early one
    mixed with late ones.

    Args:
        groups: [(name, [run directory or history.csv, ...])].
        metric: a column of history.csv, e.g. "val_robust_accuracy". Higher is
            better, except for losses.

    Returns:
        {"metric", "lower_is_better", "groups": {name: {"runs", "epochs",
        "mean", "min", "max", "best_epoch", "best", "final", "gap", "cut_from",
        "per_run": [{"best_epoch", "best", "final", "gap"}]}}}. Epochs count
        from 1. `gap` is how much worse the final value is than the best
        (best - final for accuracies): the robust-overfitting gap of Rice et al.
    """
    lower = _lower_is_better(metric)
    pick = np.nanargmin if lower else np.nanargmax
    result = {"metric": metric, "lower_is_better": lower, "groups": {}}
    for name, paths in groups:
        if not paths:
            raise ValueError(f"Group {name!r} has no runs.")
        histories = []
        for p in paths:
            history = read_history(p)
            if metric not in history:
                raise ValueError(f"{p} has no {metric!r} column; it has {sorted(history)}.")
            histories.append(history)
        last_common = min(int(h["epoch"][-1]) for h in histories)
        last_any = max(int(h["epoch"][-1]) for h in histories)
        epochs = np.arange(last_common + 1)
        stack = np.full((len(histories), len(epochs)), np.nan)
        for i, h in enumerate(histories):
            keep = h["epoch"] <= last_common
            stack[i, h["epoch"][keep]] = h[metric][keep]
        if np.isnan(stack).all():
            raise ValueError(f"Group {name!r} has no {metric!r} value at any epoch.")
        counts = (~np.isnan(stack)).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)

        def summary(curve):
            best = int(pick(curve))
            final = curve[~np.isnan(curve)][-1]
            gap = (final - curve[best]) if lower else (curve[best] - final)
            return {"best_epoch": best + 1, "best": float(curve[best]), "final": float(final), "gap": float(gap)}

        result["groups"][name] = dict(
            summary(mean), runs=list(paths), epochs=len(epochs), mean=mean.tolist(),
            min=np.fmin.reduce(stack, axis=0).tolist(), max=np.fmax.reduce(stack, axis=0).tolist(),
            cut_from=last_any + 1 if last_any > last_common else None,
            per_run=[summary(c) if not np.isnan(c).all() else None for c in stack])
    return result


def table(result):
    """Markdown: one row per group (best epoch, best, final, gap), then the mean curves by epoch."""
    metric, groups = result["metric"], result["groups"]
    scale, unit = (100, " (%)") if "accuracy" in metric else (1, "")
    fmt = (lambda x: f"{scale * x:.2f}") if scale == 100 else (lambda x: f"{x:.4g}")  # noqa: E731
    worse = "final - best" if result["lower_is_better"] else "best - final"
    lines = [f"{metric}{unit}, mean over each group's runs:", "",
             f"| group | runs | epochs | best epoch | best | final | {worse} |", "|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        lines.append(f"| {name} | {len(g['runs'])} | {g['epochs']} | {g['best_epoch']} | {fmt(g['best'])} | "
                     f"{fmt(g['final'])} | {'+' if g['gap'] >= 0 else ''}{fmt(g['gap'])} |")
    for name, g in groups.items():
        if g["cut_from"]:
            lines.append(f"\n{name}: cut at epoch {g['epochs']}, the last that all its runs reached "
                         f"(the longest has {g['cut_from']}).")
    n = max(g["epochs"] for g in groups.values())
    lines += ["", "| epoch | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for e in range(n):
        cells = [fmt(g["mean"][e]) if e < g["epochs"] else "" for g in groups.values()]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result, path):
    """Writes the groups' mean curves, with the range over runs shaded, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 100 if "accuracy" in result["metric"] else 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, g in result["groups"].items():
        epochs = np.arange(1, g["epochs"] + 1)
        line, = ax.plot(epochs, scale * np.asarray(g["mean"]), label=f"{name} ({len(g['runs'])} run{'s' if len(g['runs']) != 1 else ''})")
        if len(g["runs"]) > 1:
            ax.fill_between(epochs, scale * np.asarray(g["min"]), scale * np.asarray(g["max"]), alpha=0.2,
                            color=line.get_color())
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    ax.set_ylabel(result["metric"] + (" (%)" if scale == 100 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
