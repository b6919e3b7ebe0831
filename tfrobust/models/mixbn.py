"""MixBN: separate BatchNorm for clean and adversarial images (Xie & Yuille).

Xie & Yuille, "Intriguing properties of adversarial training at scale",
arXiv 1906.03787, Section 3: clean and adversarial images come from two
domains whose BatchNorm statistics differ; normalising a mixed batch with one
set of statistics hurts, and giving each domain its own BatchNorm (MixBN)
recovers both accuracies. Every BatchNorm layer becomes a
`MixBatchNormalization` holding two BatchNorms, "clean" and "adv"; the
rest of the network is shared.

Which branch a call uses is decided when the graph is traced:
- `route(model, branch)` is a context manager for training code (the
  `AdversarialModel` train step routes its clean part, its adversarial part and
  its attack through it);
- otherwise each layer's `branch` attribute, the inference branch, is used.
  It is saved by `get_config`, so a saved `.keras` file and a SavedModel
  export keep it. `set_branch(model, branch)` changes it on every layer.
"""

import contextlib

import keras
import numpy as np

BRANCHES = ("clean", "adv")


def _check_branch(branch, arg="branch"):
    if branch not in BRANCHES:
        raise ValueError(f"{arg} must be one of {BRANCHES}. Received: {arg}={branch!r}")
    return branch


@keras.saving.register_keras_serializable(package="tfrobust")
class MixBatchNormalization(keras.layers.Layer):
    """Two BatchNorm layers, one for clean and one for adversarial images.

    Each branch has its own moving statistics and its own affine parameters
    (gamma, beta), as in Xie & Yuille's MixBN.

    Args:
        branch: the branch used when no `route` is active: "adv" (default,
            the robust model) or "clean".
        momentum, epsilon: of both BatchNorms (PyTorch's defaults in Keras
            terms, as `default_batch_norm`).
        gamma_initializer: of both BatchNorms.
        synchronized: both BatchNorms all-reduce their batch statistics
            across replicas under a strategy (as
            `normalization.synchronized_batch_norm`).
        **kwargs: passed to `keras.layers.Layer` (e.g. `name`).
    """

    def __init__(self, branch="adv", momentum=0.9, epsilon=1e-5, gamma_initializer="ones", synchronized=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.branch = _check_branch(branch)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.synchronized = bool(synchronized)
        common = dict(momentum=self.momentum, epsilon=self.epsilon, gamma_initializer=self.gamma_initializer,
                      synchronized=self.synchronized)
        self.clean = keras.layers.BatchNormalization(name="clean", **common)
        self.adv = keras.layers.BatchNormalization(name="adv", **common)
        # Set only by `route`, for the duration of a trace.
        self._route = None

    def build(self, input_shape):
        self.clean.build(input_shape)
        self.adv.build(input_shape)

    def active_branch(self):
        """The branch a call made now would use."""
        return self._route or self.branch

    def call(self, x, training=None):
        layer = self.clean if self.active_branch() == "clean" else self.adv
        return layer(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "branch": self.branch,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
        })
        if self.synchronized:  # absent from older files, which load as unsynchronised
            config["synchronized"] = True
        return config


def mix_batch_norm(branch="adv", synchronized=False):
    """A `batch_norm` factory for the model builders that makes MixBN layers.

    Example:
        >>> model = tfrobust.models.build("resnet20", (32, 32, 3), 10,
        ...                               batch_norm=mix_batch_norm())

    Args:
        branch: the inference branch of every layer.
        synchronized: all-reduce batch statistics across replicas.

    Returns:
        A callable `name -> MixBatchNormalization`.
    """
    return _MixBatchNormFactory(_check_branch(branch), bool(synchronized))


class _MixBatchNormFactory:
    """`name -> MixBatchNormalization`; its attributes tell builders of composite layers what to make."""

    def __init__(self, branch, synchronized=False):
        self.branch, self.synchronized = branch, synchronized

    def __call__(self, name):
        return MixBatchNormalization(branch=self.branch, momentum=0.9, epsilon=1e-5,
                                     synchronized=self.synchronized, name=name)


def mixbn_layers(model):
    """All `MixBatchNormalization` layers of `model`, nested ones included, in order."""
    if isinstance(model, MixBatchNormalization):
        return [model]
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, MixBatchNormalization)]


def has_mixbn(model):
    """Whether `model` contains MixBN layers."""
    return bool(mixbn_layers(model))


@contextlib.contextmanager
def route(model, branch):
    """Routes every MixBN layer of `model` through `branch` inside the block.

    It acts when a graph is traced (or in eager calls): a `tf.function` traced
    inside the block keeps the branch it was traced with. A model without
    MixBN layers is unaffected.

    Args:
        model: a Keras model or layer.
        branch: "clean" or "adv".
    """
    _check_branch(branch)
    layers = mixbn_layers(model)
    previous = [layer._route for layer in layers]
    for layer in layers:
        layer._route = branch
    try:
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer._route = old


def set_branch(model, branch):
    """Sets the inference branch of every MixBN layer of `model`.

    Keras' cached predict/evaluate functions were traced with the old branch,
    so they are dropped and retraced on the next call.

    Args:
        model: a Keras model containing MixBN layers.
        branch: "clean" or "adv".

    Raises:
        ValueError: if `model` has no MixBN layer, or for an unknown branch.
    """
    _check_branch(branch)
    layers = mixbn_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no MixBatchNormalization layers.")
    for layer in layers:
        layer.branch = branch
    for attr in ("predict_function", "test_function", "train_function"):
        if hasattr(model, attr):
            setattr(model, attr, None)


def inference_branch(model):
    """The inference branch of `model`'s MixBN layers, or None if it has none.

    Raises:
        ValueError: if the layers disagree.
    """
    branches = {layer.branch for layer in mixbn_layers(model)}
    if len(branches) > 1:
        raise ValueError(f"MixBN layers of {model.name!r} use different branches: {sorted(branches)}")
    return branches.pop() if branches else None


def compare_branches(model):
    """Compares the clean and adversarial moving statistics layer by layer.

    This is the numerical side of Xie & Yuille's Figure 3 ("two domains"):
    if the adversarial images were just more clean images, both branches
    would converge to the same running means and variances.

    Args:
        model: a model with MixBN layers (trained, or the numbers mean nothing).

    Returns:
        A list of dicts, one per MixBN layer in model order, with
        - `layer`, `channels`;
        - `mean_shift`: mean over channels of |mu_adv - mu_clean| / sqrt(var_clean),
          the shift in units of the clean standard deviation;
        - `var_ratio`: geometric mean over channels of var_adv / var_clean;
        - `mean_corr`: correlation across channels of the two running means.
    """
    rows = []
    for layer in mixbn_layers(model):
        mc = np.asarray(layer.clean.moving_mean, dtype="float64")
        ma = np.asarray(layer.adv.moving_mean, dtype="float64")
        vc = np.asarray(layer.clean.moving_variance, dtype="float64") + layer.epsilon
        va = np.asarray(layer.adv.moving_variance, dtype="float64") + layer.epsilon
        corr = float(np.corrcoef(mc, ma)[0, 1]) if mc.size > 1 and mc.std() > 0 and ma.std() > 0 else float("nan")
        rows.append({
            "layer": layer.name,
            "channels": int(mc.size),
            "mean_shift": float(np.mean(np.abs(ma - mc) / np.sqrt(vc))),
            "var_ratio": float(np.exp(np.mean(np.log(va / vc)))),
            "mean_corr": corr,
        })
    if not rows:
        raise ValueError(f"Model {model.name!r} has no MixBatchNormalization layers.")
    return rows


def format_comparison(rows):
    """`compare_branches`' rows as a fixed-width text table."""
    width = max(len("layer"), *(len(r["layer"]) for r in rows))
    lines = [f"{'layer':<{width}}  channels  mean_shift  var_ratio  mean_corr"]
    for r in rows:
        lines.append(f"{r['layer']:<{width}}  {r['channels']:>8d}  {r['mean_shift']:>10.3f}  "
                     f"{r['var_ratio']:>9.3f}  {r['mean_corr']:>9.3f}")
    return "\n".join(lines)


def plot_branches(model, path, layer=None):
    """Writes a PNG of the two branches' statistics, as Xie & Yuille's Figure 3.

    Left: per-channel running mean, clean against adversarial, of one layer.
    Middle: the same for the running variance. Right: `mean_shift` and
    `var_ratio` for every layer against depth.

    Args:
        model: a model with MixBN layers.
        path: the PNG to write.
        layer: name of the layer of the scatter plots; None picks the one
            with the largest mean shift.

    Returns:
        The rows of `compare_branches`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = compare_branches(model)
    layers = {lay.name: lay for lay in mixbn_layers(model)}
    if layer is None:
        layer = max(rows, key=lambda r: r["mean_shift"])["layer"]
    if layer not in layers:
        raise ValueError(f"No MixBN layer named {layer!r}; expected one of {sorted(layers)}")
    chosen = layers[layer]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, stat in zip(axes[:2], ("moving_mean", "moving_variance")):
        c = np.asarray(getattr(chosen.clean, stat))
        a = np.asarray(getattr(chosen.adv, stat))
        ax.scatter(c, a, s=8)
        lo, hi = float(min(c.min(), a.min())), float(max(c.max(), a.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"clean {stat.replace('moving_', 'running ')}")
        ax.set_ylabel(f"adversarial {stat.replace('moving_', 'running ')}")
        ax.set_title(layer)
    depth = np.arange(len(rows))
    axes[2].plot(depth, [r["mean_shift"] for r in rows], "o-", label="mean shift (clean std units)")
    axes[2].plot(depth, [r["var_ratio"] for r in rows], "s-", label="variance ratio adv / clean")
    axes[2].axhline(1.0, color="k", lw=0.5)
    axes[2].set_xlabel("MixBN layer (input to output)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return rows


__all__ = ["BRANCHES", "MixBatchNormalization", "compare_branches", "format_comparison", "has_mixbn",
           "inference_branch", "mix_batch_norm", "mixbn_layers", "plot_branches", "route", "set_branch"]
