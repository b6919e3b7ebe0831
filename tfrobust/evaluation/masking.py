"""Gradient-masking checks, run before an evaluation reports any number.

A robust accuracy measured with gradient-based attacks is only an upper bound,
and a loose one when the gradients mislead the attack. Athalye et al.,
"Obfuscated gradients give a false sense of security: circumventing defenses
to adversarial examples", arXiv 1802.00420, and Carlini et al., "On
evaluating adversarial robustness", arXiv 1902.06705, list the symptoms; the
checks here measure the ones that are cheap to measure, in the spirit of
AutoAttack's warnings (Croce & Hein, arXiv 2003.01690):

| name | symptom | fires when |
|---|---|---|
| "probabilities" | the model outputs probabilities, not logits | > 99% of rows are probability vectors |
| "randomness" | two passes with `training=False` differ | largest difference > 1e-4 of the largest output |
| "gradients" | zero or non-finite cross-entropy input gradients | > 10% of the correctly classified points |
| "large_eps" | an attack that can reach every image leaves points robust | > 10% of the correctly classified points survive |
| "more_steps" | more PGD steps and restarts lower robust accuracy | by > 5 points, with one-sided McNemar p < 0.05 |
| "black_box" | Square fools points every white-box attack left robust | on > 0.2% of the evaluated points |

The model checks run on a small seeded sample (128 points by default), so
together they cost a few PGD runs on that sample. Each check gives a `Finding`
(JSON-ready); the fired ones become warnings (`GradientMaskingWarning`) and the
strings that `evaluate` puts into `Report.warnings`.

A quiet check proves nothing: these are necessary conditions for a sound
evaluation, not sufficient ones. For example, on a model whose gradients are
mostly noise, small PGD steps stall however many there are, so "more_steps"
compares two stalled attacks; a black-box attack in the evaluation (and the
"black_box" check) is what catches that case.

Example:
>>> messages = check_model(model, x_test, y_test, eps=8 / 255)
>>> messages += check_report(report)
"""

import dataclasses
import math
import warnings

import numpy as np
import tensorflow as tf

from tfrobust import progress
from tfrobust.attacks import losses as losses_lib
from tfrobust.attacks import projections
from tfrobust.attacks.pgd import PGD
from tfrobust import seeds as seeds_lib
from tfrobust.evaluation.results import WORST_CASE

CHECKS = ("probabilities", "randomness", "gradients", "large_eps", "more_steps")

# A softmax row sums to 1 within a few float32 ulps times the class count;
# 1e-4 is far above that and far below what logits sum to by chance.
PROBABILITY_SUM_TOLERANCE = 1e-4
PROBABILITY_SHARE = 0.99
# Relative to the largest output: a GPU's non-deterministic reductions change
# logits by about 1e-6 of their size, dropout or noise layers by far more.
RANDOMNESS_TOLERANCE = 1e-4
# A handful of points may saturate in float32 on a very confident model; at
# 10% the reported robust accuracy could be inflated by 10 points.
GRADIENT_SHARE = 0.10
# A few-step attack at a radius that reaches every image should break nearly
# every point; 10% leaves room for the cheap attack, not for masking.
LARGE_EPS_SURVIVORS = 0.10
# 5 points is where a masked evaluation changes a paper's conclusions; the
# McNemar test keeps sampling noise in a 128-point sample from firing it.
MORE_STEPS_GAP = 0.05
MORE_STEPS_P_VALUE = 0.05
# AutoAttack's own check (`check_square_sr`) uses 0.2% of the evaluated points.
BLACK_BOX_SHARE = 0.002
BLACK_BOX_ATTACKS = ("square",)

_DEFAULTS = dict(n=128, batch_size=128, steps=10, strong_steps=50, strong_restarts=3, large_eps_steps=10)
# For tests and smoke runs on tiny models: a few steps, and for the strong
# attack restarts rather than steps, which are cheaper to add here.
_QUICK = dict(n=100, batch_size=100, steps=2, strong_steps=3, strong_restarts=8, large_eps_steps=5)
_GRADIENT_LOSSES = ("ce", "margin", "dlr")


class GradientMaskingWarning(UserWarning):
    """A symptom of gradient masking: the robust accuracy may be overestimated."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """The outcome of one gradient-masking check.

    Args:
        name: the check, e.g. "gradients" (see the module docstring).
        fired: True if the symptom was found.
        value: the measured number the check compares with `threshold`
            (NaN if the check could not measure it).
        threshold: the check fires when `value > threshold`.
        message: what was measured and, if the check fired, what to do.
        details: further numbers (counts, p-values, the attacks used).
    """

    name: str
    fired: bool
    value: float
    threshold: float
    message: str
    details: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        """A JSON-ready dict; NaN and infinities become None."""
        return {
            "name": self.name,
            "fired": bool(self.fired),
            "value": _json_number(self.value),
            "threshold": _json_number(self.threshold),
            "message": self.message,
            "details": {k: _json_number(v) if isinstance(v, float) else v for k, v in self.details.items()},
        }


def _json_number(v):
    v = float(v)
    return v if math.isfinite(v) else None


def warn(findings):
    """Issues a `GradientMaskingWarning` per fired finding and returns their messages.

    Args:
        findings: iterable of `Finding`.

    Returns:
        list of str, the messages of the findings that fired, in order.
    """
    messages = [f.message for f in findings if f.fired]
    for message in messages:
        warnings.warn(message, GradientMaskingWarning, stacklevel=3)
    return messages


# ----------------------------------------------------------------- model checks


class _Connected:
    """The classifier with a zero-valued path from every input pixel to the logits.

    `tf.round`, `tf.stop_gradient` and other ops without a gradient leave the
    logits unconnected to the input, and `GradientTape` then returns None,
    on which PGD's step fails. Adding `0 * sum(x)` turns that None into the
    zero gradient it stands for, without changing any forward value.
    """

    def __init__(self, model):
        self.model = model

    @staticmethod
    def _connect(logits, x):
        logits = tf.cast(logits, tf.float32)
        return logits + 0.0 * tf.reduce_sum(x, axis=[1, 2, 3])[:, None]

    def __call__(self, x, training=False):
        return self._connect(self.model(x, training=training), x)

    @property
    def trainable_variables(self):
        return self.model.trainable_variables

    @property
    def non_trainable_variables(self):
        return self.model.non_trainable_variables

    def stateless_call(self, trainable_variables, non_trainable_variables, x, training=False):
        logits, updated = self.model.stateless_call(
            trainable_variables, non_trainable_variables, x, training=training
        )
        return self._connect(logits, x), updated


@dataclasses.dataclass
class _Sample:
    x: tf.Tensor  # float32 [n, H, W, C] in [0, 1]
    y: tf.Tensor  # int64 [n]
    seeds: tf.Tensor  # int32 [n, 2], as `pipelines.eval_dataset` gives them
    index: np.ndarray  # positions in the evaluation set
    batch_size: int


def _sample(images, labels, n, seed, batch_size):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            "images must be [N, H, W, C] with one label per image. "
            f"Received: images.shape={images.shape}, labels.shape={labels.shape}"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1. Received: n={n!r}")
    # A seeded subset rather than the first n: test sets are sometimes sorted
    # by class, and the first n points would then be one class.
    rng = np.random.RandomState(seed)
    index = np.sort(rng.choice(len(labels), size=min(int(n), len(labels)), replace=False))
    x = images[index]
    x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
    # The evaluation's per-element seeds (see `pipelines.eval_dataset`), so a
    # PGD run here reproduces the evaluation's outcome on these points.
    seeds = tf.stack([
        seeds_lib.derive(seeds_lib.element_seed(seed, 0, int(i)), seeds_lib.ATTACK_SALT) for i in index
    ])
    return _Sample(tf.constant(x), tf.constant(labels[index].astype("int64")), seeds, index, batch_size)


def _chunks(sample):
    for start in range(0, int(sample.x.shape[0]), sample.batch_size):
        stop = start + sample.batch_size
        yield sample.x[start:stop], sample.y[start:stop], sample.seeds[start:stop]


def _logits(model, x):
    return tf.cast(model(x, training=False), tf.float32)


def _correct(model, x, y):
    return tf.equal(tf.argmax(_logits(model, x), -1, output_type=tf.int64), y)


def _robust(attack, model, sample):
    """Per point: correct on the clean input and on the attack's output.

    An attack output that is not finite (NaN gradients make NaN steps) is not
    an image in the threat model, so it counts as a failed attack.
    """
    connected = _Connected(model)
    out = []
    for x, y, s in _chunks(sample):
        x_adv = attack(connected, x, y, s)
        finite = tf.reduce_all(tf.math.is_finite(x_adv), axis=[1, 2, 3])
        broken = tf.logical_and(finite, tf.logical_not(_correct(model, x_adv, y)))
        out.append(tf.logical_and(_correct(model, x, y), tf.logical_not(broken)).numpy())
    return np.concatenate(out)


def _probabilities(model, sample):
    rows = np.concatenate([_logits(model, x).numpy() for x, _, _ in _chunks(sample)])
    finite = np.all(np.isfinite(rows), axis=1)
    is_prob = (
        finite
        & np.all(rows >= -PROBABILITY_SUM_TOLERANCE, axis=1)
        & (np.abs(rows.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE)
    )
    share = float(np.mean(is_prob))
    fired = share > PROBABILITY_SHARE
    measured = f"{share:.0%} of {len(rows)} output rows are non-negative and sum to 1"
    if fired:
        message = (
            f"Possible gradient masking (probabilities): the model seems to output probabilities, "
            f"not logits: {measured} (threshold {PROBABILITY_SHARE:.0%}). Attack losses on softmax "
            "outputs saturate, so gradient attacks stall and robust accuracy is overestimated. "
            "Remove the final softmax (activation='softmax' or a Softmax layer) and evaluate the "
            "logits; log-probabilities are fine."
        )
    else:
        message = f"probabilities: outputs look like logits ({measured})."
    return Finding("probabilities", fired, share, PROBABILITY_SHARE, message)


def _randomness(model, sample):
    largest, changed, scale = 0.0, 0, 0.0
    for x, _, _ in _chunks(sample):
        a, b = _logits(model, x).numpy(), _logits(model, x).numpy()
        scale = max(scale, float(np.max(np.abs(a), initial=0.0)))
        diff = np.abs(a - b)
        # NaN in one pass and not in the other is randomness too.
        diff[np.isnan(a) != np.isnan(b)] = np.inf
        largest = max(largest, float(np.nanmax(diff, initial=0.0)))
        changed += int(np.sum(np.argmax(a, -1) != np.argmax(b, -1)))
    relative = largest / max(scale, 1e-12)
    fired = relative > RANDOMNESS_TOLERANCE
    measured = (
        f"two forward passes with training=False on the same {int(sample.x.shape[0])} inputs differ "
        f"by up to {relative:.3g} of the largest output, and {changed} predictions changed"
    )
    if fired:
        message = (
            f"Possible gradient masking (randomness): the model is random at inference: {measured} "
            f"(threshold {RANDOMNESS_TOLERANCE:g}). An attack then follows one draw of the noise "
            "(stochastic gradients, Athalye et al. 2018). Evaluate with expectation over "
            "transformation: AutoAttack(version='rand') or APGD(eot=20). If the randomness is not "
            "meant as a defence, switch it off at test time (e.g. Dropout or GaussianNoise called "
            "with training=True)."
        )
    else:
        message = f"randomness: deterministic ({measured})."
    details = {"changed_predictions": changed}
    return Finding("randomness", fired, relative, RANDOMNESS_TOLERANCE, message, details)


def _input_gradients(model, x, y, loss):
    connected = _Connected(model)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        total = tf.reduce_sum(loss(connected(x, training=False), y))
    return tape.gradient(total, x)


def _gradients(model, sample):
    zero, nonfinite, margin_ok, correct = 0, 0, 0, 0
    for x, y, _ in _chunks(sample):
        ok = _correct(model, x, y).numpy()
        grad = _input_gradients(model, x, y, losses_lib.cross_entropy).numpy()
        grad = grad.reshape(len(grad), -1)
        bad_value = ~np.all(np.isfinite(grad), axis=1)
        is_zero = ~bad_value & np.all(grad == 0.0, axis=1)
        if np.any(is_zero & ok):
            # Tells float32 saturation of the cross-entropy (the margin loss
            # still has a gradient) apart from a gradient that is truly absent.
            margin = _input_gradients(model, x, y, losses_lib.margin).numpy().reshape(len(grad), -1)
            usable = np.all(np.isfinite(margin), axis=1) & np.any(margin != 0.0, axis=1)
            margin_ok += int(np.sum(is_zero & ok & usable))
        zero += int(np.sum(is_zero & ok))
        nonfinite += int(np.sum(bad_value & ok))
        correct += int(np.sum(ok))
    details = {"correct": correct, "zero": zero, "nonfinite": nonfinite, "zero_but_margin_usable": margin_ok}
    if correct == 0:
        return Finding("gradients", False, float("nan"), GRADIENT_SHARE,
                       "gradients: skipped, no point of the sample is classified correctly.", details)
    share = (zero + nonfinite) / correct
    fired = share > GRADIENT_SHARE
    measured = (
        f"the input gradient of the cross-entropy is exactly zero on {zero} and not finite on "
        f"{nonfinite} of the {correct} correctly classified points ({share:.0%})"
    )
    if not fired:
        return Finding("gradients", False, share, GRADIENT_SHARE, f"gradients: {measured}.", details)
    hints = []
    if margin_ok:
        hints.append(
            f"The margin loss has a usable gradient on {margin_ok} of the {zero} zero-gradient points: "
            "the cross-entropy saturates in float32 on very confident points; attack with margin or "
            "DLR losses (PGD(loss='margin'), APGD-DLR, AutoAttack)."
        )
    if zero > margin_ok:
        hints.append(
            "Look for operations without a useful gradient (tf.round, quantisation, tf.stop_gradient, "
            "argmax, non-differentiable preprocessing) and attack through them with BPDA "
            "(Athalye et al. 2018)."
        )
    if nonfinite:
        hints.append("Look for NaN sources: sqrt or a norm at 0, log of 0, division by zero.")
    message = (
        f"Possible gradient masking (gradients): {measured}; threshold {GRADIENT_SHARE:.0%}. "
        "Gradient-based attacks cannot move from such points, so they count as robust without "
        "being robust (shattered gradients). " + " ".join(hints)
    )
    return Finding("gradients", True, share, GRADIENT_SHARE, message, details)


def default_large_eps(norm, image_shape):
    """The radius of the "large_eps" check: one whose ball reaches every image in [0, 1].

    Linf 1.0; L2 `sqrt(H * W * C)`, the diameter of the box. Inside such a
    ball an attacker may replace the image by one of another class, so only
    a constant model keeps any accuracy.
    """
    if norm == "linf":
        return 1.0
    if norm == "l2":
        return float(math.sqrt(float(np.prod(image_shape))))
    raise ValueError(f"norm must be 'linf' or 'l2'. Received: norm={norm!r}")


def _large_eps(model, sample, norm, eps, steps):
    # Started 0.001 N(0, 1) from the clean point rather than uniformly in the
    # ball: a uniform start at this radius is itself a corruption that drives
    # any model to chance level, which would hide a masked gradient (the
    # attack that then never moves) on a problem with 10 or more classes.
    attack = PGD(eps=eps, norm=norm, steps=steps, init="gaussian", name="pgd_large_eps")
    robust = _robust(attack, model, sample)
    correct = int(np.sum(np.concatenate([_correct(model, x, y).numpy() for x, y, _ in _chunks(sample)])))
    details = {"correct": correct, "survivors": int(robust.sum()), "eps": eps, "steps": steps}
    if correct == 0:
        return Finding("large_eps", False, float("nan"), LARGE_EPS_SURVIVORS,
                       "large_eps: skipped, no point of the sample is classified correctly.", details)
    share = float(robust.sum()) / correct
    fired = share > LARGE_EPS_SURVIVORS
    measured = (
        f"{share:.0%} of the {correct} correctly classified points survive a {steps}-step PGD at "
        f"{norm} eps={eps:g}, a radius that reaches every image in [0, 1]"
    )
    if fired:
        message = (
            f"Possible gradient masking (large_eps): {measured} (threshold "
            f"{LARGE_EPS_SURVIVORS:.0%}). An attack that may change the image into any other should "
            "succeed on every point (Carlini et al. 2019); here the gradients do not lead it. "
            "Attack through the masking (BPDA, EOT, margin losses) and check with a gradient-free "
            "attack such as Square."
        )
    else:
        message = f"large_eps: {measured}."
    return Finding("large_eps", fired, share, LARGE_EPS_SURVIVORS, message, details)


def _binomial_tail(k, n):
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided exact McNemar p-value."""
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def _describe(attack):
    return f"{attack.steps} steps, {attack.restarts} restart{'s' if attack.restarts > 1 else ''}"


def _more_steps(model, sample, weak, strong):
    weak_robust = _robust(weak, model, sample)
    strong_robust = _robust(strong, model, sample)
    n = len(weak_robust)
    # Paired outcomes on the same points: only the discordant pairs carry
    # information about which attack is stronger (McNemar's test).
    only_strong = int(np.sum(weak_robust & ~strong_robust))
    only_weak = int(np.sum(~weak_robust & strong_robust))
    gap = (only_strong - only_weak) / n
    p = _binomial_tail(only_strong, only_strong + only_weak)
    fired = gap > MORE_STEPS_GAP and p < MORE_STEPS_P_VALUE
    details = {
        "weak_accuracy": float(weak_robust.mean()), "strong_accuracy": float(strong_robust.mean()),
        "broken_only_by_strong": only_strong, "broken_only_by_weak": only_weak, "p_value": p,
        "weak": weak.get_config(), "strong": strong.get_config(),
    }
    measured = (
        f"at {weak.norm} eps={weak.eps:g} on {n} points, PGD with {_describe(weak)} leaves "
        f"{weak_robust.mean():.1%} robust and PGD with {_describe(strong)} leaves "
        f"{strong_robust.mean():.1%}: {100 * gap:.1f} points lower (one-sided McNemar p={p:.2g})"
    )
    if fired:
        message = (
            f"Possible gradient masking (more_steps): {measured}; threshold "
            f"{100 * MORE_STEPS_GAP:g} points with p < {MORE_STEPS_P_VALUE}. The evaluation's attack "
            "has not converged, so its robust accuracy is too high (Carlini et al. 2019). Report "
            "stronger attacks (more steps and restarts, APGD, AutoAttack) and look for the cause "
            "with the other checks."
        )
    else:
        message = f"more_steps: {measured}."
    return Finding("more_steps", fired, gap, MORE_STEPS_GAP, message, details)


def _resolve(quick, **given):
    defaults = _QUICK if quick else _DEFAULTS
    opts = {k: defaults[k] if given.get(k) is None else given[k] for k in defaults}
    for k, v in opts.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{k} must be an int >= 1. Received: {k}={v!r}")
    return opts


def _weak_and_strong(weak_attack, eps, norm, steps, strong_steps, strong_restarts):
    if weak_attack is None:
        weak = PGD(eps=eps, norm=norm, steps=steps, name="pgd_weak")
    elif not isinstance(weak_attack, PGD):
        raise TypeError(
            f"weak_attack must be a PGD (or None). Received: weak_attack={type(weak_attack).__name__}"
        )
    elif weak_attack.targeted or weak_attack.random_target or weak_attack.loss not in _GRADIENT_LOSSES:
        raise ValueError(
            "weak_attack must be an untargeted PGD on the ce, margin or dlr loss. "
            f"Received: targeted={weak_attack.targeted}, loss={weak_attack.loss!r}"
        )
    elif weak_attack.norm != norm or not math.isclose(weak_attack.eps, eps):
        raise ValueError(
            f"weak_attack must attack the threat model being checked ({norm}, eps={eps:g}). "
            f"Received: norm={weak_attack.norm!r}, eps={weak_attack.eps:g}"
        )
    else:
        # As the evaluation ran it: the question is whether its number holds.
        weak = weak_attack
    # The weak attack continued: the same loss, start, step size and seeds,
    # with more steps and restarts, keeping the best iterate. Its first
    # restart passes through every iterate of the weak one, so it can only
    # break more points, and a gap means the weak attack had not converged.
    # Madry's rule (step 2.5 eps / steps) would shrink the step instead, and
    # on noisy gradients 50 small steps then travel less far than 10 large
    # ones. Restarts only differ with a random start.
    strong = weak.replace(
        steps=max(strong_steps, 2 * weak.steps),
        restarts=max(strong_restarts, 2 * weak.restarts) if weak.init != "none" else weak.restarts,
        select="best",
        name="pgd_strong",
    )
    return weak, strong


def model_findings(classifier, images, labels, *, eps=None, norm="linf", seed=0, n=None, batch_size=None,
                   weak_attack=None, steps=None, strong_steps=None, strong_restarts=None, large_eps=None,
                   large_eps_steps=None, quick=False, checks=CHECKS, verbose="auto"):
    """Runs the model-level gradient-masking checks on a small sample.

    The checks are those of the module's table but "black_box" (which reads
    an evaluation's outcomes, `report_findings`). "more_steps" continues the
    evaluation's PGD (the same loss, start, step size and seeds, with more
    steps and restarts, keeping the best iterate): it visits every iterate of
    the original, so a gap can only mean that the original had not converged.

    The sample is a seeded subset of `n` points, with the per-element attack
    seeds `evaluate` uses, so the weak attack reproduces the evaluation's
    outcome on it.

    Args:
        classifier: `keras.Model` (or callable `model(x, training=False)`)
            from float32 [0, 1] NHWC images to logits.
        images: uint8 or float32 [0, 1] array `[N, H, W, C]`.
        labels: int array `[N]`.
        eps: the evaluation's radius; needed only for "more_steps".
        norm: "linf" or "l2".
        seed: the evaluation's global seed (sample and random starts).
        n: sample size. Default 128 (quick: 100).
        batch_size: points per forward pass. Default 128 (quick: 100).
        weak_attack: the evaluation's `PGD` at (norm, eps) for "more_steps";
            default PGD with `steps` steps.
        steps: steps of the default weak PGD. Default 10 (quick: 2).
        strong_steps: steps of the strong PGD (at least twice the weak
            one's). Default 50 (quick: 3).
        strong_restarts: restarts of the strong PGD (at least twice the weak
            one's; 1 if the weak one has no random start). Default 3
            (quick: 8).
        large_eps: radius of "large_eps"; default `default_large_eps`.
        large_eps_steps: steps of the "large_eps" PGD. Default 10 (quick: 5).
        quick: cheap defaults, for tests and smoke runs.
        checks: the names of the checks to run, a subset of `CHECKS`.
        verbose: progress (`tfrobust.progress`): "auto", 1 (bar), 2 (lines)
            or 0.

    Returns:
        list of `Finding`, one per check run, in the order of `checks`.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"checks must be a subset of {CHECKS}. Received: checks={tuple(checks)}")
    projections.get(norm)
    if "more_steps" in checks and eps is None:
        raise ValueError("The 'more_steps' check needs the evaluation's eps. Received: eps=None")
    opts = _resolve(quick, n=n, batch_size=batch_size, steps=steps, strong_steps=strong_steps,
                    strong_restarts=strong_restarts, large_eps_steps=large_eps_steps)
    sample = _sample(images, labels, opts["n"], seed, opts["batch_size"])
    weak = strong = None
    if "more_steps" in checks:
        weak, strong = _weak_and_strong(weak_attack, float(eps), norm, opts["steps"],
                                        opts["strong_steps"], opts["strong_restarts"])
    found = []
    # A context, so that a check that raises does not leave the bar's line thread running. No estimate of the time
    # left: a check's cost depends on tracing and on how many points its attacks leave, not on a count.
    with progress.Progress(len(checks), f"gradient-masking checks: {', '.join(checks)}", "check",
                           verbose=verbose, eta=False) as bar:
        for check in checks:
            if check == "probabilities":
                found.append(_probabilities(classifier, sample))
            elif check == "randomness":
                found.append(_randomness(classifier, sample))
            elif check == "gradients":
                found.append(_gradients(classifier, sample))
            elif check == "large_eps":
                radius = default_large_eps(norm, sample.x.shape[1:]) if large_eps is None else float(large_eps)
                found.append(_large_eps(classifier, sample, norm, radius, opts["large_eps_steps"]))
            else:
                found.append(_more_steps(classifier, sample, weak, strong))
            bar.update(len(found))
    return found


def check_model(classifier, images, labels, *, eps=None, norm="linf", seed=0, **options):
    """Runs `model_findings`, warns about each symptom found and returns the messages.

    Args:
        classifier, images, labels, eps, norm, seed: see `model_findings`.
        **options: the other arguments of `model_findings` (n, quick, ...).

    Returns:
        list of str, one message per check that fired (empty if none did).
        Each is also issued as a `GradientMaskingWarning`.
    """
    return warn(model_findings(classifier, images, labels, eps=eps, norm=norm, seed=seed, **options))


# ---------------------------------------------------------------- report check


def _is_ensemble(result):
    params = result.params or {}
    return (
        result.attack == WORST_CASE
        or result.attack.startswith("autoattack")
        or "of" in params
        or "components" in params
    )


def _black_box_finding(name, norm, eps, n, fooled, left, white_box, via=""):
    share = fooled / n if n else float("nan")
    fired = bool(n) and share > BLACK_BOX_SHARE
    measured = (
        f"the black-box attack '{name}' fools {fooled} points ({share:.1%} of the {n} evaluated) that "
        f"{via or 'every white-box attack'} at {norm} eps={eps:g} ({', '.join(white_box)}) left robust, "
        f"{fooled / max(left, 1):.0%} of the {left} points they left robust"
    )
    details = {"fooled": fooled, "white_box_robust": left, "n": n, "norm": norm, "eps": eps,
               "black_box": name, "white_box": list(white_box)}
    if fired:
        message = (
            f"Possible gradient masking (black_box): {measured} (threshold {BLACK_BOX_SHARE:.1%} of the "
            "points, as in AutoAttack). A gradient-free attack should not beat gradient-based ones; "
            "when it does, the gradients mislead them (Athalye et al. 2018). Report the worst case "
            "over all attacks, and run the black-box attack longer and an adaptive attack."
        )
    else:
        message = f"black_box: {measured}."
    return Finding("black_box", fired, share, BLACK_BOX_SHARE, message, details)


def report_findings(report, black_box=BLACK_BOX_ATTACKS):
    """The report-level check: a black-box attack fools points the white-box ones left.

    For each result of a black-box attack (named in `black_box`), the
    white-box attacks are the other results at the same (norm, eps), without
    "worst_case" and ensembles (named "autoattack..." or with "of" or
    "components" in their params). The check counts the points that every
    white-box attack left robust and the black-box attack broke; it fires
    above 0.2% of the evaluated points, the tolerance of AutoAttack's
    `check_square_sr`. Black-box attacks beating white-box ones is a symptom
    listed by Athalye et al., arXiv 1802.00420, and Carlini et al.,
    arXiv 1902.06705.

    Ensembles whose per-component accuracies are in `Result.extra["after"]`
    (AutoAttack) are checked too: the drop in robust accuracy at a black-box
    component of the cascade is what it broke after every earlier
    (white-box) component.

    Args:
        report: a `tfrobust.evaluation.Report`.
        black_box: names of black-box attacks.

    Returns:
        list of `Finding` named "black_box", one per black-box result (empty
        if the report has none with white-box results beside it).
    """
    found = []
    n = report.n
    for r in report.results:
        if r.attack not in black_box or _is_ensemble(r):
            continue
        white = [
            w for w in report.results
            if w is not r and w.norm == r.norm and math.isclose(w.eps, r.eps)
            and w.attack not in black_box and not _is_ensemble(w)
        ]
        if not white:
            continue
        left = np.logical_and.reduce([np.asarray(w.robust, bool) for w in white])
        fooled = int(np.sum(left & ~np.asarray(r.robust, bool)))
        found.append(_black_box_finding(r.attack, r.norm, r.eps, n, fooled, int(left.sum()),
                                        [w.attack for w in white]))
    for r in report.results:
        after = r.extra.get("after") if r.extra else None
        if not after:
            continue
        names = list(after)
        for i, name in enumerate(names):
            if i == 0 or not any(name.startswith(b) for b in black_box):
                continue
            before = after[names[i - 1]]
            fooled = int(round((before - after[name]) * n))
            found.append(_black_box_finding(name, r.norm, r.eps, n, fooled, int(round(before * n)),
                                            names[:i], via=f"every earlier attack of '{r.attack}'"))
    return found


def check_report(report, black_box=BLACK_BOX_ATTACKS):
    """Runs `report_findings`, warns if a black-box attack beats the white-box ones.

    Args:
        report: a `tfrobust.evaluation.Report`.
        black_box: names of black-box attacks.

    Returns:
        list of str, the messages of the findings that fired; each is also
        issued as a `GradientMaskingWarning`.
    """
    return warn(report_findings(report, black_box))


# ------------------------------------------------------------- for `evaluate`


def _threat_models(attacks):
    """(norm, eps) of the attacks, in order, with the evaluation's PGD at each if any."""
    found = {}
    for a in attacks:
        norm, eps = getattr(a, "norm", None), getattr(a, "eps", None)
        if norm not in projections.THREAT_MODELS or eps is None:
            continue
        key = (norm, round(float(eps), 12))
        weak = found.setdefault(key, None)
        usable = (isinstance(a, PGD) and a.steps > 1 and not a.targeted and not a.random_target
                  and not a.target_classes and a.loss in _GRADIENT_LOSSES)
        if weak is None and usable:
            found[key] = a
    return found


def collect_findings(classifier, images, labels, attacks, report=None, *, seed=0, **options):
    """Every check, for the threat models of an evaluation's attacks.

    The eps-free checks run once; "large_eps" once per norm; "more_steps"
    once per (norm, eps), against the evaluation's first untargeted
    multi-step PGD there (or a default PGD). A check that raises becomes a
    fired finding that says so, because an unverified number should not be
    reported silently and a finished evaluation should not be lost.

    Args:
        classifier, images, labels, seed: as for `evaluate`.
        attacks: the evaluation's attacks.
        report: the evaluation's `Report`, for the black-box check.
        **options: passed to `model_findings` (n, quick, strong_steps, ...).

    Returns:
        list of `Finding`.
    """
    found = []

    def run(checks, **kwargs):
        try:
            found.extend(model_findings(classifier, images, labels, seed=seed, checks=checks,
                                        **kwargs, **options))
        except Exception as e:  # noqa: BLE001 -- reported as a finding, see docstring
            found.append(Finding(
                "error", True, float("nan"), float("nan"),
                f"Gradient-masking checks {', '.join(checks)} could not run ({type(e).__name__}: {e}); "
                "the robust accuracies are unverified.",
            ))

    threat_models = _threat_models(attacks)
    run(("probabilities", "randomness", "gradients"))
    norms = []
    for (norm, eps), weak in threat_models.items():
        checks = ("more_steps",) if norm in norms else ("large_eps", "more_steps")
        norms.append(norm)
        run(checks, eps=eps, norm=norm, weak_attack=weak)
    if report is not None:
        found.extend(report_findings(report))
    return found


def run_checks(classifier, images, labels, attacks, report=None, *, seed=0, **options):
    """What `evaluate` runs: every check, a warning per symptom, the messages.

    Args:
        classifier, images, labels, attacks, report, seed, **options: see
            `collect_findings`.

    Returns:
        list of str for `Report.warnings`; each is also issued as a
        `GradientMaskingWarning`.
    """
    return warn(collect_findings(classifier, images, labels, attacks, report, seed=seed, **options))


__all__ = [
    "BLACK_BOX_ATTACKS", "CHECKS", "Finding", "GradientMaskingWarning", "check_model", "check_report",
    "collect_findings", "default_large_eps", "model_findings", "report_findings", "run_checks", "warn",
]
