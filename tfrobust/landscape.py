"""Loss landscapes (Li et al. 2018), with the numbers the plots only suggest.

Li et al., "Visualizing the loss landscape of neural nets", arXiv 1712.09913:
the loss along `w + a d1` (1D) or `w + a d1 + b d2` (2D) for random
directions `d` that are *filter-normalised*: each filter of `d` (one output
channel of a convolution, one output unit of a dense layer) is rescaled to
the norm of the same filter in `w`, so that scale-invariant networks at
different weight scales become comparable. Prabhu et al. (arXiv 1907.09061)
use these plots to compare clean and adversarially fine-tuned models.

Conventions here:
- Directions cover the trainable weights. Vectors (biases, BatchNorm gamma
  and beta) get zero direction by default, as in Li et al.
  (`ignore_vectors=False` normalises each as one filter instead).
- BatchNorm's moving statistics: `bn="fixed"` keeps the trained ones at
  every grid point (cheap; what a deployed model would use). `bn="recompute"`
  re-estimates them at every grid point from `bn_batches` batches of the
  data (training-mode passes with a cumulative average), since perturbed
  weights change the activations' statistics. Li et al.'s code keeps the
  statistics fixed; the choice is recorded in the saved grid.
- On adversarial data (`attack=`), the attack is recomputed at every grid
  point against the perturbed weights.

Beyond the paper, which judged flatness by eye: `hessian_top_eigenvalue` (power
iteration on Hessian-vector products) and `loss_increase` (the mean loss
increase at a fixed filter-normalised radius, a sharpness measure).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfrobust import progress
from tfrobust.attacks import registry as attack_registry
from tfrobust.data import pipelines

NORMALIZATIONS = ("filter", "layer", "none")
BN_MODES = ("fixed", "recompute")


# --------------------------------------------------------------------------- directions


def _filters(array):
    """`array` reshaped to [filters, -1]: the last axis indexes filters/output units."""
    return array.reshape(-1, array.shape[-1]).T


def normalize_direction(direction, weights, norm="filter", ignore_vectors=True):
    """Rescales a direction to the weights' scale, filter by filter (Li et al., Section 4).

    Args:
        direction: list of arrays shaped like `weights`.
        weights: list of arrays (the model's trainable weights).
        norm: "filter" (per output filter), "layer" (per weight tensor) or "none".
        ignore_vectors: zero the direction on 1-D weights (biases, BN).

    Returns:
        A list of float32 arrays.
    """
    if norm not in NORMALIZATIONS:
        raise ValueError(f"norm must be one of {NORMALIZATIONS}. Received: norm={norm!r}")
    out = []
    for d, w in zip(direction, weights):
        d = np.asarray(d, dtype="float64")
        w = np.asarray(w, dtype="float64")
        if d.shape != w.shape:
            raise ValueError(f"Direction shape {d.shape} does not match weight shape {w.shape}")
        if w.ndim <= 1 and ignore_vectors:
            out.append(np.zeros_like(w, dtype="float32"))
            continue
        if norm == "none":
            out.append(d.astype("float32"))
        elif norm == "layer" or w.ndim <= 1:
            out.append((d * np.linalg.norm(w) / max(np.linalg.norm(d), 1e-12)).astype("float32"))
        else:
            df, wf = _filters(d), _filters(w)
            scale = np.linalg.norm(wf, axis=1) / np.maximum(np.linalg.norm(df, axis=1), 1e-12)
            out.append((df * scale[:, None]).T.reshape(d.shape).astype("float32"))
    return out


def random_direction(model, seed=0, norm="filter", ignore_vectors=True):
    """A Gaussian direction over `model.trainable_weights`, normalised (see `normalize_direction`)."""
    rng = np.random.RandomState(seed)
    weights = [w.numpy() for w in model.trainable_weights]
    return normalize_direction([rng.standard_normal(w.shape) for w in weights], weights, norm, ignore_vectors)


def interpolation_direction(model_a, model_b):
    """The direction from `model_a`'s weights to `model_b`'s (a=1 reaches model_b)."""
    wa, wb = model_a.trainable_weights, model_b.trainable_weights
    if [w.shape for w in wa] != [w.shape for w in wb]:
        raise ValueError("The two models' trainable weights differ in shape.")
    return [(b.numpy() - a.numpy()).astype("float32") for a, b in zip(wa, wb)]


# --------------------------------------------------------------------------- evaluation


def _bn_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_bn_statistics(model, dataset, batches):
    """Re-estimates every BatchNorm layer's moving statistics as the mean over `batches` batches.

    Args:
        model: the classifier.
        dataset: yields `({"image": x, ...}, y)` or `(x, y)` batches.
        batches: how many batches to average over.
    """
    layers = _bn_layers(model)
    if not layers:
        return
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    try:
        for i, (features, _) in enumerate(dataset.take(batches)):
            x = features["image"] if isinstance(features, dict) else features
            for layer in layers:
                # momentum i/(i+1): after k batches, the plain mean of their statistics.
                layer.momentum = i / (i + 1.0)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


class _Evaluator:
    """Mean loss and accuracy of `model` on `dataset`, optionally under `attack`, under a strategy."""

    def __init__(self, model, dataset, attack=None, strategy=None):
        self.model, self.attack = model, attack
        self.strategy = strategy or tf.distribute.get_strategy()
        self.dataset = dataset
        self._dist = (self.strategy.experimental_distribute_dataset(dataset)
                      if self.strategy.num_replicas_in_sync > 1 else None)

        def per_replica(features, y):
            x = features["image"]
            if attack is not None:
                x = attack(model, x, y, features["seed"])
            logits = tf.cast(model(x, training=False), tf.float32)
            loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)), tf.float32)
            return tf.stack([tf.reduce_sum(loss), tf.reduce_sum(correct), tf.cast(tf.size(y), tf.float32)])

        @tf.function(reduce_retracing=True)
        def step(features, y):
            out = self.strategy.run(per_replica, args=(features, y))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

        self._step = step

    def __call__(self):
        total = np.zeros(3)
        for features, y in self._dist if self._dist is not None else self.dataset:
            total += self._step(features, y).numpy()
        return total[0] / total[2], total[1] / total[2]


def _set(variables, base, directions, coords):
    for i, v in enumerate(variables):
        value = base[i]
        for d, c in zip(directions, coords):
            value = value + c * d[i]
        v.assign(value)


def grid_coordinates(span=(-1.0, 1.0), points=21, dims=1):
    """The grid's axes: `dims` copies of `points` evenly spaced values over `span`."""
    axis = np.linspace(span[0], span[1], points)
    return [axis] * dims


def evaluate_grid(model, images, labels, directions, axes, *, attack=None, bn="fixed", bn_batches=4,
                  batch_size=250, seed=0, path=None, strategy=None, verbose="auto"):
    """Loss and accuracy at every point of a 1D or 2D grid around the model's weights.

    Args:
        model: the classifier; its weights are restored afterwards.
        images, labels: the data (uint8 or float32 [0, 1]); its first batches
            also re-estimate BatchNorm statistics when `bn="recompute"`.
        directions: one or two directions (lists of arrays over the
            trainable weights), e.g. from `random_direction`.
        axes: one coordinate array per direction (see `grid_coordinates`).
        attack: optional attack recomputed at every point (adversarial landscape).
        bn: "fixed" or "recompute" (see the module docstring).
        bn_batches: batches used by "recompute".
        batch_size: evaluation batch (global, under a strategy).
        seed: seed of the attack's per-element random starts.
        path: optional `.npz` file; the grid is saved after every point and a
            call with the same arguments resumes from it.
        strategy: optional `tf.distribute.Strategy`; each grid point's data is
            split over its replicas.
        verbose: "auto" (a bar on a terminal, lines in a pipe: `tfrobust.progress`), 1, 2 or 0.

    Returns:
        A dict with `axes`, `loss` and `accuracy` (arrays shaped like the
        grid), and `meta`.
    """
    if len(directions) not in (1, 2) or len(axes) != len(directions):
        raise ValueError("Give one or two directions and one axis per direction.")
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}. Received: bn={bn!r}")
    variables = model.trainable_weights
    for d in directions:
        if [np.shape(a) for a in d] != [tuple(v.shape) for v in variables]:
            raise ValueError("A direction does not match the model's trainable weights.")
    shape = tuple(len(a) for a in axes)
    meta = {"bn": bn, "bn_batches": int(bn_batches) if bn == "recompute" else 0, "n": int(len(labels)),
            "attack": None if attack is None else attack.get_config(), "seed": int(seed),
            "shape": list(shape), "axes": [np.asarray(a, dtype="float64").round(12).tolist() for a in axes]}
    # As the file holds it: JSON turns the attack's tuples into lists.
    meta = json.loads(json.dumps(meta))
    loss = np.full(shape, np.nan)
    acc = np.full(shape, np.nan)
    if path and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["meta"]))
            if saved.get("attack") is not None:
                # A grid saved before an attack parameter existed resumes under the parameter's default.
                saved["attack"] = json.loads(json.dumps(attack_registry.upgrade_config(saved["attack"])))
            if saved != meta:
                raise ValueError(f"{path} holds another grid (data, attack, BN mode or axes differ); "
                                 "use another path or delete it.")
            loss, acc = z["loss"], z["accuracy"]

    dataset = pipelines.eval_dataset(images, labels, batch_size=batch_size, seed=seed)
    evaluator = _Evaluator(model, dataset, attack, strategy)
    base = [v.numpy() for v in variables]
    bn_layers = _bn_layers(model)
    bn_saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in bn_layers]
    todo = [idx for idx in np.ndindex(*shape) if np.isnan(loss[idx])]
    bar = progress.Progress(len(todo), "landscape", "point", verbose=verbose)
    try:
        for k, idx in enumerate(todo):
            coords = [axes[j][i] for j, i in enumerate(idx)]
            _set(variables, base, directions, coords)
            if bn == "recompute":
                recompute_bn_statistics(model, dataset, bn_batches)
            loss[idx], acc[idx] = evaluator()
            if path:
                tmp = path + ".tmp.npz"
                np.savez(tmp, loss=loss, accuracy=acc, meta=json.dumps(meta))
                os.replace(tmp, path)
            bar.update(k + 1)
    finally:
        bar.close()
        _set(variables, base, [], [])
        for layer, (mean, var) in zip(bn_layers, bn_saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
    return {"axes": [np.asarray(a) for a in axes], "loss": loss, "accuracy": acc, "meta": meta}


# --------------------------------------------------------------------------- sharpness numbers


def _flat(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def hessian_top_eigenvalue(loss_fn, variables, iterations=20, seed=0, tol=1e-4):
    """The largest-magnitude eigenvalue of the loss Hessian, by power iteration.

    Hessian-vector products come from double backpropagation, so the Hessian
    is never formed.

    Args:
        loss_fn: a zero-argument callable computing the scalar loss from
            `variables`' current values.
        variables: the `tf.Variable`s to differentiate by.
        iterations: at most this many power iterations.
        seed: seed of the start vector.
        tol: stop when the relative change of the estimate is below this.

    Returns:
        A float: the eigenvalue estimate (a Rayleigh quotient).
    """
    rng = np.random.RandomState(seed)
    v = [tf.constant(rng.standard_normal(var.shape), var.dtype) for var in variables]
    norm = tf.norm(_flat(v))
    v = [t / norm for t in v]

    @tf.function(reduce_retracing=True)
    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_fn()
            grads = inner.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            dot = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, vectors)])
        return outer.gradient(dot, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    estimate = None
    for _ in range(iterations):
        hv = hvp(v)
        new = float(tf.reduce_sum(_flat(hv) * _flat(v)))
        norm = tf.norm(_flat(hv))
        if float(norm) == 0.0:
            return 0.0
        v = [t / norm for t in hv]
        if estimate is not None and abs(new - estimate) <= tol * max(abs(estimate), 1e-12):
            return new
        estimate = new
    return estimate


def loss_increase(loss_fn, variables, directions, radius):
    """Mean loss increase `L(w + radius d) - L(w)` over the given directions (a sharpness measure).

    With filter-normalised directions the radius is relative to each filter's
    norm, so the number compares across models (Li et al.'s argument for
    their plots).

    Args:
        loss_fn: zero-argument callable, the loss at the variables' values.
        variables: the variables the directions are over.
        directions: list of directions (lists of arrays shaped like `variables`).
        radius: the step length along each direction.

    Returns:
        (mean increase, list of per-direction increases).
    """
    base = [v.numpy() for v in variables]
    at_w = float(loss_fn())
    increases = []
    try:
        for d in directions:
            _set(variables, base, [d], [radius])
            increases.append(float(loss_fn()) - at_w)
    finally:
        _set(variables, base, [], [])
    return float(np.mean(increases)), increases


def model_loss_fn(model, images, labels):
    """A zero-argument loss callable for `hessian_top_eigenvalue` / `loss_increase`.

    Cross-entropy of `model` (BatchNorm in inference mode) on the given
    float32 [0, 1] images, in one batch.
    """
    x = tf.constant(np.asarray(images, dtype="float32") / (255.0 if np.asarray(images).dtype == np.uint8 else 1.0))
    y = tf.constant(np.asarray(labels, dtype="int64"))

    def loss_fn():
        logits = tf.cast(model(x, training=False), tf.float32)
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    return loss_fn


def sharpness(model, images, labels, radius=0.1, directions=5, seed=0, hessian_iterations=20):
    """Both sharpness numbers of `model` on the given data.

    Returns:
        A dict: `top_hessian_eigenvalue`, `loss_increase` (mean over
        `directions` filter-normalised random directions at `radius`),
        `loss_increase_std`, `radius`, `directions`, `n`.
    """
    loss_fn = model_loss_fn(model, images, labels)
    variables = model.trainable_weights
    dirs = [random_direction(model, seed=seed + k) for k in range(directions)]
    mean, each = loss_increase(loss_fn, variables, dirs, radius)
    return {
        "top_hessian_eigenvalue": hessian_top_eigenvalue(loss_fn, variables, iterations=hessian_iterations,
                                                         seed=seed),
        "loss_increase": mean,
        "loss_increase_std": float(np.std(each)),
        "radius": float(radius),
        "directions": int(directions),
        "n": int(len(labels)),
    }


def spearman(a, b):
    """Spearman's rank correlation of two equal-length sequences (ties get their average rank).

    Returns NaN when either sequence is constant or shorter than 2.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two 1D sequences of one length. Received shapes {a.shape}, {b.shape}")

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def geometry_table(runs, landscape_dir="landscape"):
    """Accuracy, 1-SSIM and sharpness of several models, and how 1-SSIM ranks against sharpness.

    Prabhu et al. (arXiv 1907.09061) linked the 1-SSIM of a model's
    adversarial examples to how smooth its loss landscape looks. This puts
    numbers on it across models: for every attack with a 1-SSIM in the
    models' evaluations, Spearman's rank correlation between the models' mean
    1-SSIM and each sharpness measure (the top Hessian eigenvalue and the loss
    increase at a fixed filter-normalised radius). With a handful of models
    the correlation can take only a few values (4 models: multiples of 0.2),
    so it is a description, not a test.

    Args:
        runs: run directories, each with `eval.json` (`tfrobust eval --json`)
            and `<landscape_dir>/sharpness.json` (`tfrobust landscape`).
        landscape_dir: the landscape output directory inside each run.

    Returns:
        A dict: `models` (per run: clean accuracy, `robust` {attack: accuracy},
        `ssim` {attack: 1-SSIM}, `top_hessian_eigenvalue`, `loss_increase`) and
        `spearman` {attack: {"top_hessian_eigenvalue": rho, "loss_increase": rho}}.
    """
    models = []
    for run in runs:
        paths = [os.path.join(run, "eval.json"), os.path.join(run, landscape_dir, "sharpness.json")]
        for path in paths:
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing: run `tfrobust eval {run} --json {paths[0]}` and "
                                        f"`tfrobust landscape {run} --out {os.path.dirname(paths[1])}` first.")
        with open(paths[0]) as f:
            report = json.load(f)
        with open(paths[1]) as f:
            sharp = json.load(f)
        key = lambda r: f"{r['attack']} {r['norm']} {r['eps']:.4g}"  # noqa: E731
        models.append({
            "run": run,
            "clean": report["clean_accuracy"],
            "robust": {key(r): r["accuracy"] for r in report["results"]},
            "ssim": {key(r): r["ssim_distance"] for r in report["results"] if "ssim_distance" in r},
            "top_hessian_eigenvalue": sharp["top_hessian_eigenvalue"],
            "loss_increase": sharp["loss_increase"],
        })
    attacks = [k for k in models[0]["ssim"] if all(k in m["ssim"] for m in models)]
    correlations = {
        attack: {measure: spearman([m["ssim"][attack] for m in models], [m[measure] for m in models])
                 for measure in ("top_hessian_eigenvalue", "loss_increase")}
        for attack in attacks
    }
    return {"models": models, "spearman": correlations}


def format_geometry_table(table):
    """The `geometry_table` dict as Markdown."""
    models = table["models"]
    attacks = list(table["spearman"])
    robust = [k for k in models[0]["robust"] if all(k in m["robust"] for m in models)]
    header = ["model", "clean %"] + [f"{a} %" for a in robust] + [f"1-SSIM {a}" for a in attacks]
    header += ["top Hessian eigenvalue", "loss increase"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [os.path.basename(os.path.normpath(m["run"])), f"{100 * m['clean']:.1f}"]
        cells += [f"{100 * m['robust'][a]:.1f}" for a in robust]
        cells += [f"{m['ssim'][a]:.4f}" for a in attacks]
        cells += [f"{m['top_hessian_eigenvalue']:.3g}", f"{m['loss_increase']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Spearman rank correlation across the {len(models)} models, 1-SSIM against sharpness:", "",
              "| attack | vs top Hessian eigenvalue | vs loss increase |", "|---|---|---|"]
    for a, rho in table["spearman"].items():
        lines.append(f"| {a} | {rho['top_hessian_eigenvalue']:+.2f} | {rho['loss_increase']:+.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def plot(grid, path, title=""):
    """Writes the grid as PNG: a loss/accuracy curve (1D), or contour plus 3D surface (2D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes, loss, acc = grid["axes"], grid["loss"], grid["accuracy"]
    if len(axes) == 1:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot(axes[0], loss, "b-", label="loss")
        ax.set_xlabel("alpha (filter-normalised direction)")
        ax.set_ylabel("loss", color="b")
        ax2 = ax.twinx()
        ax2.plot(axes[0], 100 * acc, "r--", label="accuracy")
        ax2.set_ylabel("accuracy (%)", color="r")
        ax.set_title(title)
    else:
        fig = plt.figure(figsize=(11, 4.5))
        a, b = np.meshgrid(axes[0], axes[1], indexing="ij")
        ax = fig.add_subplot(1, 2, 1)
        # Losses far from the minimum are orders of magnitude above it: with
        # evenly spaced levels the basin around the model gets no line at all.
        positive = np.maximum(loss, 1e-6)
        levels = np.geomspace(positive.min(), positive.max(), 15) if positive.max() > positive.min() else 15
        contour = ax.contour(a, b, positive, levels=levels, norm=matplotlib.colors.LogNorm())
        ax.clabel(contour, inline=True, fontsize=7, fmt="%.3g")
        ax.plot([0], [0], "k+")
        ax.set_xlabel("alpha")
        ax.set_ylabel("beta")
        ax.set_title((title or "loss") + " - log-spaced contours")
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        ax3.plot_surface(a, b, np.log10(positive), cmap="viridis", linewidth=0)
        ax3.set_xlabel("alpha")
        ax3.set_ylabel("beta")
        ax3.set_zlabel("log10 loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["evaluate_grid", "format_geometry_table", "geometry_table", "grid_coordinates", "hessian_top_eigenvalue",
           "interpolation_direction", "loss_increase", "model_loss_fn", "normalize_direction", "plot",
           "random_direction", "recompute_bn_statistics", "sharpness", "spearman"]
