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


def read_history(path):
    """{column: np.ndarray} of a run directory's `history.csv` (or of the csv file itself), by epoch."""
    csv_path = os.path.join(path, "history.csv") if os.path.isdir(path) else path
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"No training history at {csv_path}: `tfrobust train` writes RUN/history.csv.")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} has no epochs.")
    # A resumed run appends; an epoch that was re-run after a kill keeps its last line.
    by_epoch = {int(r["epoch"]): r for r in rows}
    epochs = sorted(by_epoch)
    columns = [c for c in rows[0] if c != "epoch"]
    out = {"epoch": np.asarray(epochs)}
    for c in columns:
        out[c] = np.asarray([float(by_epoch[e][c]) if by_epoch[e].get(c) not in (None, "") else np.nan
                             for e in epochs])
    return out


def summarise(groups, metric="val_robust_accuracy"):
    """Per group of runs: the mean curve of `metric`, its best and final values and the gap.

    Args:
        groups: [(name, [run directory or history.csv, ...])].
        metric: a column of history.csv, e.g. "val_robust_accuracy".

    Returns:
        {"metric", "groups": {name: {"runs", "epochs", "mean", "min", "max",
        "best_epoch", "best", "final", "gap", "per_run": [{"best", "final",
        "gap", "best_epoch"}]}}}. `gap` is best - final of the mean curve
        (epochs count from 1); the per-run figures are each run's own.
    """
    result = {"metric": metric, "groups": {}}
    for name, paths in groups:
        if not paths:
            raise ValueError(f"Group {name!r} has no runs.")
        curves = []
        for p in paths:
            history = read_history(p)
            if metric not in history:
                raise ValueError(f"{p} has no {metric!r} column; it has {sorted(history)}.")
            curves.append(history[metric])
        n = min(len(c) for c in curves)  # runs still training are compared on their common epochs
        stack = np.stack([c[:n] for c in curves])
        mean = stack.mean(axis=0)
        best = int(np.nanargmax(mean))
        per_run = [{"best_epoch": int(np.nanargmax(c)) + 1, "best": float(np.nanmax(c)), "final": float(c[-1]),
                    "gap": float(np.nanmax(c) - c[-1])} for c in stack]
        result["groups"][name] = {
            "runs": list(paths), "epochs": n, "mean": mean.tolist(), "min": stack.min(axis=0).tolist(),
            "max": stack.max(axis=0).tolist(), "best_epoch": best + 1, "best": float(mean[best]),
            "final": float(mean[-1]), "gap": float(mean[best] - mean[-1]), "per_run": per_run,
        }
    return result


def table(result):
    """Markdown: one row per group with best epoch, best, final and gap (points), then the mean curves."""
    metric, groups = result["metric"], result["groups"]
    lines = [f"{metric}, mean over each group's runs (%):", "",
             "| group | runs | epochs | best epoch | best | final | best - final |", "|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        lines.append(f"| {name} | {len(g['runs'])} | {g['epochs']} | {g['best_epoch']} | {100 * g['best']:.2f} | "
                     f"{100 * g['final']:.2f} | {100 * g['gap']:+.2f} |")
    n = max(g["epochs"] for g in groups.values())
    lines += ["", "| epoch | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for e in range(n):
        cells = [f"{100 * g['mean'][e]:.2f}" if e < g["epochs"] else "" for g in groups.values()]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result, path):
    """Writes the groups' mean curves, with the range over runs shaded, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, g in result["groups"].items():
        epochs = np.arange(1, g["epochs"] + 1)
        line, = ax.plot(epochs, 100 * np.asarray(g["mean"]), label=f"{name} ({len(g['runs'])} runs)")
        if len(g["runs"]) > 1:
            ax.fill_between(epochs, 100 * np.asarray(g["min"]), 100 * np.asarray(g["max"]), alpha=0.2,
                            color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{result['metric']} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
