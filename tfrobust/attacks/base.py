"""Pieces every attack shares: input checks, seeds, the BatchNorm-safe forward pass."""

import contextlib
import dataclasses
import threading
import warnings

import numpy as np
import tensorflow as tf

from tfrobust import seeds as seeds_lib


class AttackMixin:
    """`get_config`, `from_config` and `replace` for attacks written as frozen dataclasses.

    Every attack in tfrobust is a frozen dataclass with at least `eps`, `norm`
    and `name` fields, and is called as `attack(model, x, y, seeds)`.
    """

    def get_config(self):
        """Returns the attack's parameters as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def replace(self, **changes):
        """Returns a copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of an attack that makes several: one target class and one restart.

    An attack with restarts or target classes (APGD, FAB, Square) keeps, per
    point, the best of its runs; each run draws its random start from seeds
    derived from the point's seed, the target rank and the restart, so a run
    alone gives each point exactly what it gives inside the whole attack.
    AutoAttack's cascade uses this to attack, in each run, only the points
    every earlier run left robust, as the reference implementation does.

    Attributes:
        attack: the attack whose run this is.
        target: the rank of the target class (0 for an untargeted attack).
        restart: the restart's index.
    """

    attack: object
    target: int
    restart: int

    @property
    def name(self):
        return self.attack.name

    @property
    def norm(self):
        return self.attack.norm

    def get_config(self):
        return {**self.attack.get_config(), "run": [self.target, self.restart]}

    def __call__(self, model, x, y, seeds=None):
        return self.attack.call_runs(model, x, y, seeds, only=(self.target, self.restart))


def runs_of(attack, num_classes):
    """The attack's runs (`Run`), or `(attack,)` when it makes only one run.

    Args:
        attack: an attack; one with several runs has `run_keys(num_classes)`.
        num_classes: the classifier's number of classes (targets depend on it).
    """
    keys = attack.run_keys(num_classes) if hasattr(attack, "run_keys") else ()
    if len(keys) <= 1:
        return (attack,)
    return tuple(Run(attack, target, restart) for target, restart in keys)


def prepare(x, y, seeds, labels="classes", num_classes=None):
    """Checks `x` and `y` (`check_inputs`) and fills in position seeds when `seeds` is None.

    Args:
        x: float32 images `[B, H, W, C]` in [0, 1].
        y: the attack's labels: int class indices `[B]` (or `[B, 1]`), or,
            with `labels="probabilities"`, float `[B, K]`.
        seeds: int32 `[B, 2]`, or None.
        labels: "classes" or "probabilities".
        num_classes: int or None; class indices must be below it.

    Returns:
        `(x, y, seeds)` as tensors; `y` of classes as a vector `[B]`.
    """
    x, y = check_inputs(x, y, labels=labels, num_classes=num_classes)
    if seeds is None:
        seeds = position_seeds(tf.shape(x)[0])
    return x, y, tf.convert_to_tensor(seeds, seeds_lib.SEED_DTYPE)


def position_seeds(batch_size, global_seed=0):
    """Seeds from the position in the batch: a fallback for batches without seeds."""
    positions = tf.range(batch_size, dtype=seeds_lib.SEED_DTYPE)
    pairs = tf.stack([positions, tf.fill([batch_size], tf.constant(global_seed, seeds_lib.SEED_DTYPE))], 1)
    return seeds_lib.derive(pairs, seeds_lib.ATTACK_SALT)


PRECISIONS = ("float32", "bfloat16")


def forward_fn(model, bn, precision="float32"):
    """`x -> logits` that never updates BatchNorm statistics.

    `precision="bfloat16"` computes the passes in bfloat16 (the model's
    layers under the "mixed_bfloat16" policy while the pass is traced; the
    variables stay float32), for training attacks on hardware with fast
    bfloat16 (AMX here, TPUs, recent GPUs). The caller casts logits back to
    float32 for the loss.

    "inference" calls the model with `training=False`, with each Conv2D ->
    BatchNormalization pair folded into one convolution (`models.folding`:
    the same function, cheaper); "batch_stats" uses batch statistics through
    `stateless_call` and drops the new moving statistics.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision == "bfloat16":
        from tfrobust.models import folding

        inner = forward_fn(model, bn)

        def bfloat16_forward(x):
            with folding.temporary_policy(model, "mixed_bfloat16"):
                return inner(x)

        return bfloat16_forward
    if bn == "inference":
        from tfrobust.models import folding

        return folding.inference_forward(model)

    check_batch_stats_under_strategy(model)
    return stateless_training_forward(model)


def stateless_training_forward(model):
    """`x -> logits` normalising with the batch's statistics, without updating them.

    The "batch_stats" pass of `forward_fn`, without its check: for passes
    outside an attack's loop, where synchronized BatchNorm works under a
    strategy.
    """

    def batch_stats_forward(x):
        # Batch statistics as in training, but the new moving statistics that
        # stateless_call returns are dropped: the attack never updates them.
        logits, _ = model.stateless_call(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            x,
            training=True,
        )
        return logits

    return batch_stats_forward


def check_batch_stats_under_strategy(model):
    """Refuses, with a clear error, a batch-statistics attack that TF would fail on.

    A `BatchNormalization(synchronized=True)` layer all-reduces its batch
    moments. Under MirroredStrategy and MultiWorkerMirroredStrategy that
    all-reduce is a cross-replica `merge_call` (see `strategy_merges`), which
    TF does not allow inside an attack's `tf.function` or `tf.while_loop`; it
    would fail there with an unclear RuntimeError. Called while an attack is
    traced. TPUStrategy all-reduces without a merge_call and passes, as does
    no strategy.

    Args:
        model: the classifier the attack runs.

    Raises:
        ValueError: under such a strategy, when `model` has synchronized
            BatchNorm layers.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        if strategy_merges(strategy):
            refuse_synchronized_batch_stats(model, strategy)


def strategy_merges(strategy, xla=None):
    """Whether synchronized BatchNorm all-reduces through `merge_call` under `strategy`.

    Mirrors TF's `MirroredExtended._use_merge_call` (MultiWorkerMirrored's is
    the same): MirroredStrategy and MultiWorkerMirroredStrategy merge with any
    replica count, one included, except inside XLA-compiled code on devices
    that are all GPUs. Other strategies never merge.

    Args:
        strategy: a `tf.distribute.Strategy`.
        xla: None to read TF's own flag for the graph being traced (while an
            attack is traced); True or False to predict it before anything is
            traced: whether the attack will be XLA-compiled.

    Returns:
        A bool.
    """
    if not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        return False
    if xla is None:
        # Private, so read defensively: without it, assume the merge_call that every TF release so far uses.
        return bool(getattr(strategy.extended, "_use_merge_call", lambda: True)())
    gpus = all(tf.DeviceSpec.from_string(d).device_type == "GPU" for d in strategy.extended.worker_devices)
    return not (xla and gpus)


def refuse_synchronized_batch_stats(model, strategy, cause=None):
    """Raises the error of `check_batch_stats_under_strategy` if `model` has synchronized BatchNorm.

    Args:
        model: a Keras model (anything else has nothing to synchronise).
        strategy: the strategy named in the message.
        cause: the exception this one replaces, if any (kept as `__cause__`).

    Raises:
        ValueError: naming the first synchronized layer and the ways out.
    """
    if not hasattr(model, "_flatten_layers"):  # not a Keras model: nothing to synchronise
        return
    from tfrobust.models import normalization

    synced = [layer.path for layer in normalization.batch_norm_layers(model) if layer.synchronized]
    if synced:
        raise ValueError(
            f"Batch statistics (an attack's bn='batch_stats', or an evaluation with --bn batch_stats) cannot "
            f"be used under {type(strategy).__name__} on a model with synchronized BatchNormalization "
            f"({synced[0]!r} and {len(synced) - 1} more): an attack's loop cannot all-reduce batch statistics. "
            "Use the attack's bn='inference', run without the strategy (--strategy default), or unsynchronised "
            "BatchNorm (model.sync_bn=false), whose batch statistics are per replica."
        ) from cause


def number(name, value):
    """`value` as a float, or a TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
    return float(value)


def check_eps(attack):
    """Checks that a frozen attack dataclass's `eps` is a number > 0, and stores it as a float."""
    eps = number("eps", attack.eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0. Received: eps={attack.eps}")
    object.__setattr__(attack, "eps", eps)


def check_counts(attack, names):
    """Checks that each named field of an attack is an int >= 1 (steps, restarts, queries, ...)."""
    for arg in names:
        value = getattr(attack, arg)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be an int >= 1. Received: {arg}={value!r}")


def output_classes(model):
    """The number of classes `model` outputs, from its `output_shape`, or None when it does not say."""
    try:
        k = model.output_shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return int(k) if k else None


# Inside XLA every assert is dropped (tf.debugging.Assert and check_numerics compile to nothing), so a value
# check there would pass silently. Code that compiles an attack with XLA checks the inputs before it, in
# eager or plain-graph code (`AdversarialModel` does, in its train and test steps), and says so with
# `inputs_checked()`; the attack then leaves the values alone.
_checked_outside = threading.local()


@contextlib.contextmanager
def inputs_checked():
    """Marks the attacks called (or traced) inside as having had their inputs' values checked already.

    For code that runs `check_inputs` before an attack it compiles with XLA, where
    the attack's own checks would be dropped, or that would check the same batch twice.
    """
    depth = getattr(_checked_outside, "depth", 0)
    _checked_outside.depth = depth + 1
    try:
        yield
    finally:
        _checked_outside.depth = depth


def compiled(fn, **kwargs):
    """`fn` as a `tf.function` traced without autograph, as tfrobust compiles its attacks.

    The attacks write their control flow as `tf.while_loop` and `tf.cond`, so autograph has nothing to
    convert, yet its rewriting of every Python function they call was most of the tracing (APGD on
    ResNet-20: 11.6 s of tracing with it, 3.3 s without; the same graph). Keras 3 traces its own train
    and predict steps without it too. A model whose `call` branches in Python on a tensor fails here
    loudly, as it does in `keras.Model.fit`.

    Args:
        fn: The Python function to compile.
        **kwargs: Passed to `tf.function` (`input_signature`, `jit_compile`, `reduce_retracing`).

    Returns:
        The `tf.function`.
    """
    return tf.function(fn, autograph=False, **kwargs)


def in_xla():
    """Whether the code being traced is compiled with XLA (`jit_compile=True`, TPUs)."""
    if tf.executing_eagerly():
        return False
    try:  # private, so read defensively; it answers for tf.function(jit_compile=True) since TF 2.5
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):
        return False


def _require(conditions):
    """Checks `(bool tensor, message)` pairs: raises ValueError when eager, asserts in a graph.

    A message is a string, or a function `message(graph=False)`: eager, it
    returns the text; in a graph, the text and the tensors to print after it.
    A failed graph assert raises TensorFlow's InvalidArgumentError
    ("assertion failed: [message] [values]"; see `input_errors`).

    Returns:
        The assert ops to depend on (an empty list when eager or when the
        values are not checked here).
    """
    if tf.executing_eagerly():
        for condition, message in conditions:
            if not bool(condition):
                raise ValueError(message() if callable(message) else message)
        return []
    if getattr(_checked_outside, "depth", 0):
        return []
    if in_xla():
        warnings.warn(
            "NaN or inf pixels, pixels outside [0, 1] and labels out of range cannot be refused inside an "
            "XLA-compiled function (jit_compile=True): XLA drops asserts, so these inputs are not checked. Check "
            "them before it with tfrobust.attacks.base.check_inputs(x, y, num_classes=...).",
            stacklevel=4,
        )
        return []
    asserts = []
    for condition, message in conditions:
        text, values = (message, []) if isinstance(message, str) else message(graph=True)
        asserts.append(tf.debugging.Assert(condition, [_GRAPH_MARK + text, *values]))
    return asserts


# Starts the message of every failed graph assert of these checks, so that `input_errors` can find it.
_GRAPH_MARK = "Invalid input: "


@contextlib.contextmanager
def input_errors():
    """Turns the InvalidArgumentError of a failed graph check (`check_inputs`) into the ValueError it reports.

    A check that fails inside a `tf.function` surfaces as TensorFlow's
    InvalidArgumentError, with the check's message among TensorFlow's; this
    raises a ValueError with the message alone. Other errors pass unchanged.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        text = e.message if isinstance(getattr(e, "message", None), str) else str(e)
        start = text.find("assertion failed: [" + _GRAPH_MARK)
        if start < 0:
            raise
        line = text[start + len("assertion failed: [" + _GRAPH_MARK):].split("\n", 1)[0].rstrip()
        # "text] [1] [2]": the values printed after the text; no message of these checks contains "] [".
        raise ValueError(line.removesuffix("]").replace("] [", " ")) from None


def check_images(x, name="x"):
    """Checks the pixel contract: float32 NHWC in [0, 1], finite and not empty.

    The dtype, the rank and a static batch of 0 are checked when the call is
    traced; the values (NaN, inf, range) when eager, or by graph asserts
    inside a `tf.function`. Under XLA, which drops asserts, check before the
    compiled function (see `inputs_checked`).

    Args:
        x: the images.
        name: str, the argument named in the error.

    Returns:
        `x` as a tensor.

    Raises:
        TypeError: not float32.
        ValueError: not rank 4, empty, not finite or outside [0, 1].
    """
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:
        raise TypeError(
            f"{name} must be float32 images in [0, 1] (convert uint8 with "
            f"{name} / 255). Received: {name}.dtype={x.dtype.name}"
        )
    if x.shape.rank != 4:
        raise ValueError(
            f"{name} must be NHWC images, rank 4. Received: {name}.shape={x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one image. Received: {name}.shape={x.shape}")
    if tf.executing_eagerly() and tf.size(x) == 0:
        return x  # images of size 0 (H, W or C of 0): nothing to check, and the model will say so
    finite = tf.reduce_all(tf.math.is_finite(x))
    # NaN compares False both ways, so the range is checked on the finite pixels only.
    masked = tf.where(tf.math.is_finite(x), x, 0.5)
    lo, hi = tf.reduce_min(masked), tf.reduce_max(masked)

    def not_finite(graph=False):
        count = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.int32))
        text = f"{name} must be finite pixel values in [0, 1]. Received: {name} with NaN or inf values:"
        return (text, [count]) if graph else f"{text} {int(count)}"

    def out_of_range(graph=False):
        text = f"{name} must lie in [0, 1] (divide 0-255 pixels by 255). Received: {name} with "
        return (text + "min, max =", [lo, hi]) if graph else f"{text}min={float(lo):.4g}, max={float(hi):.4g}"

    asserts = _require([(finite, not_finite),
                        (tf.logical_and(lo >= 0.0, hi <= 1.0), out_of_range)])
    if asserts:
        with tf.control_dependencies(asserts):
            x = tf.identity(x)
    return x


LABEL_KINDS = ("classes", "probabilities")


def check_labels(y, x, name="y", labels="classes", num_classes=None, images_name="x"):
    """Checks labels against their images: dtype, shape, one per image, and range.

    Args:
        y: class indices, integer `[B]` or `[B, 1]`; or, with
            `labels="probabilities"`, float `[B, K]`.
        x: the images (a tensor), whose batch `y` must match.
        name: str, the argument named in the error.
        labels: "classes" or "probabilities".
        num_classes: int or None: class indices must lie in [0, num_classes)
            (with None, only >= 0 is checked).
        images_name: str, the images' argument named in the error.

    Returns:
        `y` as a tensor; class indices as a vector `[B]`.

    Raises:
        TypeError: class indices that are not integers, probabilities that
            are not floats.
        ValueError: a wrong shape (one-hot labels among them), a length other
            than the images' batch, or values out of range.
    """
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}. Received: labels={labels!r}")
    y = tf.convert_to_tensor(y)
    if labels == "probabilities":
        if not y.dtype.is_floating or y.shape.rank != 2:
            raise ValueError(f"{name} must be float probabilities [B, K] for this loss. "
                             f"Received: {name}.dtype={y.dtype.name}, {name}.shape={y.shape}")
    else:
        # The shape first: one-hot labels are usually floats, and "not integers" would not say what to do.
        if y.shape.rank == 2 and y.shape[-1] != 1:
            raise ValueError(f"{name} must hold class indices [B] (or [B, 1]), not one-hot vectors or "
                             f"probabilities: use tf.argmax({name}, -1). Received: {name}.shape={y.shape}")
        if y.shape.rank not in (1, 2):
            raise ValueError(f"{name} must hold class indices [B] (or [B, 1]). Received: {name}.shape={y.shape}")
        if not y.dtype.is_integer:
            raise TypeError(
                f"{name} must hold integer class indices [B]. Received: {name}.dtype={y.dtype.name}"
                + (f" (cast whole-number float labels with tf.cast({name}, tf.int64))" if y.dtype.is_floating else ""))
        if y.shape.rank == 2:
            y = tf.reshape(y, [-1])
    n_y, n_x = y.shape[0], x.shape[0]
    if n_y is not None and n_x is not None and n_y != n_x:
        raise ValueError(f"{name} must hold one label per image in {images_name}. "
                         f"Received: {name}.shape={y.shape}, {images_name}.shape={x.shape}")
    conditions = []
    if n_y is None or n_x is None:
        def mismatch(graph=False):
            text = f"{name} must hold one label per image in {images_name}. Received: labels, images ="
            return (text, [tf.shape(y)[0], tf.shape(x)[0]]) if graph else f"{text} {len(y)} {len(x)}"

        conditions.append((tf.equal(tf.shape(y)[0], tf.shape(x)[0]), mismatch))
    if labels == "probabilities":
        conditions.append((tf.reduce_all(tf.math.is_finite(y)), f"{name} must be finite probabilities. "
                                                               f"Received: {name} with NaN or inf values"))
    elif not (tf.executing_eagerly() and tf.size(y) == 0):
        lo, hi = tf.reduce_min(y), tf.reduce_max(y)

        def out_of_range(graph=False):
            text = (f"{name} must be class indices in [0, {'num_classes' if num_classes is None else num_classes}). "
                    f"Received: {name} with ")
            return (text + "min, max =", [lo, hi]) if graph else f"{text}min={int(lo)}, max={int(hi)}"

        conditions.append((tf.logical_and(lo >= 0, True if num_classes is None else hi < num_classes), out_of_range))
    asserts = _require(conditions)
    if asserts:
        with tf.control_dependencies(asserts):
            y = tf.identity(y)
    return y


def check_inputs(x, y, labels="classes", num_classes=None, x_name="x", y_name="y"):
    """Checks an attack's (or a training step's) images and labels; see `check_images`, `check_labels`.

    Call it before a function that you compile with XLA (`jit_compile=True`):
    XLA drops the asserts that check the values inside.

    Args:
        x: float32 images `[B, H, W, C]` in [0, 1].
        y: labels (see `check_labels`).
        labels: "classes" or "probabilities".
        num_classes: int or None, the bound of the class indices.
        x_name: str, the images' argument named in errors.
        y_name: str, the labels' argument named in errors.

    Returns:
        `(x, y)` as tensors.
    """
    x = check_images(x, name=x_name)
    y = check_labels(y, x, name=y_name, labels=labels, num_classes=num_classes, images_name=x_name)
    return x, y
