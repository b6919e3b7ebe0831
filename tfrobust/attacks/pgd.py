"""FGSM and PGD, composed from a loss, an initialiser, a step rule and a projection."""

import dataclasses
import functools
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrobust import seeds as seeds_lib
from tfrobust.attacks import base
from tfrobust.attacks import losses as losses_lib
from tfrobust.attacks import projections

_INITS = ("uniform", "gaussian", "none")
_SELECT = ("best", "last")
_BN_MODES = ("inference", "batch_stats")
STEP_RULES = ("sign", "adam")


@dataclasses.dataclass(frozen=True)
class PGD(base.AttackMixin):
    """Projected gradient descent (ascent) on the loss, under Linf or L2.

    Madry et al., "Towards deep learning models resistant to adversarial
    attacks", arXiv 1706.06083. With `steps=1` and no random start it is FGSM
    (Goodfellow et al., arXiv 1412.6572); with a uniform start and step
    `1.25 * eps` it is Wong et al.'s FGSM-RS ("Fast is better than free",
    arXiv 2001.03994). Use `FGSM(...)` for those.

    Distance: Linf or L2, in [0, 1] pixel units. The result always lies in the
    eps-ball around `x` and in [0, 1].

    The attack is a pure function of `(model, x, y, seeds)`: the step count is
    static, randomness comes only from the per-element `seeds`, and it compiles
    under XLA (`tf.function(jit_compile=True)`).

    Args:
        eps: float > 0, the radius of the threat model.
        norm: "linf" or "l2". Default "linf".
        steps: int >= 1, gradient steps per restart. Default 10.
        step_size: float > 0. Default `2.5 * eps / steps` (Madry et al.).
        restarts: int >= 1. The per-example worst case over restarts is kept.
        loss: "ce" (cross-entropy), "margin" (CW) or "kl" (TRADES; `y` are
            then the clean probabilities `[B, K]`). Default "ce".
        init: "uniform" (in the ball), "gaussian" (TRADES' 0.001 N(0,1)) or
            "none" (start at x). Default "uniform".
        targeted: if True, `y` holds target classes and the attack descends
            the loss towards them.
        select: "best" keeps, per example, the iterate that fools the model
            (or, failing that, the one with the highest loss), at the cost of
            one extra forward pass; "last" returns the final iterate, as
            training does.
        bn: "inference" runs the model with `training=False`, so BatchNorm
            uses its moving statistics; "batch_stats" uses batch statistics
            through `stateless_call` and throws the updates away. Neither
            updates the moving statistics.
        name: the attack's name in reports.
        init_radius: radius of the uniform start, if not eps (N-FGSM starts
            in a ball twice as large as its eps; see `NFGSM`).
        random_target: if True, `y` holds the true labels and each example
            is attacked towards a target class drawn uniformly from the other
            classes with its own seed (Kannan et al., arXiv 1803.06373; the
            targeted evaluation of Xie & Yuille, arXiv 1906.03787). The
            attack succeeds only if the target is reached; accuracy is still
            measured against the true label.
        precision: "float32", or "bfloat16" to compute the forward and
            input-gradient passes in bfloat16 (a training option for
            hardware with fast bfloat16: the step direction is a sign or a
            normalised gradient, which bfloat16 keeps; the loss and the
            projection stay float32). Evaluate in float32.
        step_rule: "sign", the norm's steepest ascent (the sign of the
            gradient for Linf, the normalised gradient for L2), or "adam":
            Adam's update on the input (Kingma & Ba, arXiv 1412.6980), the
            step rule of the attacks in Gowal et al.'s released code
            (DeepMind `adversarial_robustness`, arXiv 2110.09468: for
            training 10 steps, `step_size=0.1`, `step_schedule=((5, 0.1),)`).
            Each restart starts Adam's moments afresh.
        step_schedule: `(boundary, scale)` pairs: from the 0-based step
            `boundary` on, the step size is multiplied by `scale`
            (cumulatively, like optax's `piecewise_constant_schedule`).
            Default: constant.
        target_classes: if > 0, the MultiTargeted attack of Gowal et al.,
            "An alternative surrogate loss for PGD-based adversarial testing",
            arXiv 1910.09338: `restarts` runs towards each of the
            `target_classes` classes with the largest clean logits other than
            the true one, each ascending the logit difference `z_t - z_y`; an
            example counts as broken if any run misclassifies it (not only as
            its target). Needs `loss="margin"` and an untargeted attack. At most
            num_classes - 1 targets are used; each costs one PGD run.

    Call arguments:
        model: a callable `model(x, training=...) -> logits` (a Keras model).
        x: float32 `[B, H, W, C]` in [0, 1].
        y: int class indices `[B]` (or `[B, 1]`) in [0, num_classes)
            (targets if `targeted`); float probabilities `[B, K]` for "kl".
            `x` and `y` are checked (`base.check_inputs`); inside an
            XLA-compiled function only their dtypes and shapes are.
        seeds: int32 `[B, 2]` per-element seeds, as carried by tfrobust
            batches. If None, seeds are derived from the position in the
            batch (deterministic, but the same for every batch).
        eps_scale: optional scalar multiplying eps and step size (warm-up).

    Returns:
        float32 `[B, H, W, C]` adversarial examples, under `tf.stop_gradient`.

    Example:
    >>> attack = PGD(eps=0.3, steps=40, step_size=0.01)
    >>> x_adv = attack(model, x, y, seeds)
    """

    eps: float
    norm: str = "linf"
    steps: int = 10
    step_size: Optional[float] = None
    restarts: int = 1
    loss: str = "ce"
    init: str = "uniform"
    targeted: bool = False
    select: str = "best"
    bn: str = "inference"
    name: str = "pgd"
    init_radius: Optional[float] = None
    random_target: bool = False
    precision: str = "float32"
    step_rule: str = "sign"
    step_schedule: Tuple[Tuple[int, float], ...] = ()
    target_classes: int = 0

    def __post_init__(self):
        base.check_eps(self)
        projections.get(self.norm)
        losses_lib.get(self.loss)
        base.check_counts(self, ("steps", "restarts"))
        if self.step_size is None:
            object.__setattr__(self, "step_size", 2.5 * self.eps / self.steps)
        else:
            step_size = base.number("step_size", self.step_size)
            if not step_size > 0:
                raise ValueError(
                    f"step_size must be > 0. Received: step_size={self.step_size}"
                )
            object.__setattr__(self, "step_size", step_size)
        if self.init_radius is not None:
            radius = base.number("init_radius", self.init_radius)
            if not radius > 0:
                raise ValueError(f"init_radius must be > 0. Received: init_radius={self.init_radius}")
            object.__setattr__(self, "init_radius", radius)
        if self.random_target and (self.targeted or self.loss == "kl"):
            raise ValueError("random_target draws its own targets from the true labels: it needs "
                             f"targeted=False and a class loss. Received: targeted={self.targeted}, loss={self.loss!r}")
        if (not isinstance(self.target_classes, (int, np.integer)) or isinstance(self.target_classes, bool)
                or self.target_classes < 0):
            raise ValueError(f"target_classes must be an int >= 0. Received: target_classes={self.target_classes!r}")
        if self.target_classes and (self.loss != "margin" or self.targeted or self.random_target):
            raise ValueError("MultiTargeted (target_classes > 0) picks its own targets and ascends z_t - z_y: it "
                             "needs loss='margin', targeted=False and random_target=False. Received: "
                             f"loss={self.loss!r}, targeted={self.targeted}, random_target={self.random_target}")
        object.__setattr__(self, "step_schedule", projections.check_step_schedule(self.step_schedule, self.steps))
        for arg, allowed in (("init", _INITS), ("select", _SELECT), ("bn", _BN_MODES),
                             ("precision", base.PRECISIONS), ("step_rule", STEP_RULES)):
            if getattr(self, arg) not in allowed:
                raise ValueError(
                    f"{arg} must be one of {allowed}. Received: {arg}={getattr(self, arg)!r}"
                )

    def _radii(self, eps_scale):
        """(eps, step size, random-start radius) as tensors, each times `eps_scale` if given."""
        eps = tf.constant(self.eps, tf.float32)
        step_size = tf.constant(self.step_size, tf.float32)
        radius = tf.constant(self.eps if self.init_radius is None else self.init_radius, tf.float32)
        if eps_scale is not None:
            eps_scale = tf.cast(eps_scale, tf.float32)
            eps, step_size, radius = eps * eps_scale, step_size * eps_scale, radius * eps_scale
        return eps, step_size, radius

    def _runs(self, forward, x, y, loss_fn):
        """(target rank or None, loss) per run: one run, or one per likely wrong class (MultiTargeted)."""
        if not self.target_classes:
            return [(None, loss_fn)]
        clean_logits = tf.cast(forward(x), tf.float32)
        num_classes = int(clean_logits.shape[-1])
        wrong = _likely_wrong_classes(clean_logits, y, min(self.target_classes, num_classes - 1))
        return [(rank, functools.partial(losses_lib.target_margin, targets=t)) for rank, t in enumerate(wrong)]

    def __call__(self, model, x, y, seeds=None, eps_scale=None):
        x, y, seeds = base.prepare(x, y, seeds, labels="probabilities" if self.loss == "kl" else "classes",
                                   num_classes=base.output_classes(model))
        eps, step_size, radius = self._radii(eps_scale)
        threat = projections.get(self.norm)
        init = {
            "uniform": threat.init,
            "gaussian": projections.small_gaussian_init,
            "none": projections.no_init,
        }[self.init]
        loss_fn = losses_lib.get(self.loss)
        forward = base.forward_fn(model, self.bn, self.precision)
        targeted = self.targeted
        if self.random_target:
            y = random_targets(y, seeds, int(forward(x[:1]).shape[-1]))
            targeted = True
        sign = -1.0 if targeted else 1.0
        runs = self._runs(forward, x, y, loss_fn)

        def loss_and_grad(x_adv, loss_fn):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x_adv)
                logits = tf.cast(forward(x_adv), tf.float32)
                per_example = sign * loss_fn(logits, y)
                total = tf.reduce_sum(per_example)
            return logits, per_example, tape.gradient(
                total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        def fooled(logits):
            if self.loss == "kl":
                return tf.zeros(tf.shape(logits)[:1], tf.bool)
            hit = tf.equal(tf.argmax(logits, -1, output_type=tf.int64), tf.cast(y, tf.int64))
            return hit if targeted else tf.logical_not(hit)

        track = self.select == "best" or self.restarts > 1
        batch = tf.shape(x)[0]
        best = (x, tf.zeros([batch], tf.bool), tf.fill([batch], -np.inf))

        adam = self.step_rule == "adam"

        def step(i, x_adv, best, moments, loss_fn):
            logits, per_example, grad = loss_and_grad(x_adv, loss_fn)
            if track:
                best = _keep_better(best, (x_adv, fooled(logits), per_example))
            size = projections.scheduled(step_size, self.step_schedule, i)
            if adam:
                update, moments = projections.adam_step(grad, size, moments, i + 1)
            else:
                update = threat.step(grad, size)
            return threat.project(x_adv + update, x, eps), best, moments

        for rank, loss_fn in runs:
            for restart in range(self.restarts):
                if rank is not None:
                    restart_seeds = seeds_lib.derive(seeds, 2000 + 100 * rank + restart)
                else:
                    restart_seeds = seeds if restart == 0 else seeds_lib.derive(seeds, 1000 + restart)
                x_adv = init(x, restart_seeds, radius)
                # The sign rule carries no state; an empty tuple keeps one loop for both rules.
                moments = projections.adam_state(x) if adam else ()
                if self.steps == 1:
                    x_adv, best, _ = step(tf.constant(0), x_adv, best, moments, loss_fn)
                else:
                    _, x_adv, best, _ = tf.while_loop(
                        lambda i, *_: i < self.steps,
                        lambda i, xa, b, m, f=loss_fn: (i + 1, *step(i, xa, b, m, f)),
                        (tf.constant(0), x_adv, best, moments),
                    )
                if track:
                    logits = tf.cast(forward(x_adv), tf.float32)
                    per_example = sign * loss_fn(logits, y)
                    best = _keep_better(best, (x_adv, fooled(logits), per_example))
        return tf.stop_gradient(best[0] if track else x_adv)


def _keep_better(best, candidate):
    """Per example, the better of two (images, fooled, loss): fooled beats not fooled, then the higher loss."""
    bx, bf, bl = best
    cx, cf, cl = candidate
    better = tf.logical_or(tf.logical_and(cf, tf.logical_not(bf)), tf.logical_and(tf.equal(cf, bf), cl > bl))
    return tf.where(better[:, None, None, None], cx, bx), tf.where(better, cf, bf), tf.where(better, cl, bl)


def _likely_wrong_classes(logits, y, k):
    """The `k` classes with the largest logits other than `y`, most likely first: `k` tensors `[B]`."""
    num_classes = int(logits.shape[-1])
    wrong = logits - tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=logits.dtype) * 1e9
    ranking = tf.argsort(wrong, axis=-1, direction="DESCENDING", stable=True)
    return [ranking[:, r] for r in range(k)]


TARGET_SALT = 31


def random_targets(y, seeds, num_classes):
    """A target class per example, uniform over the classes other than `y`, from the example's seed."""
    u = seeds_lib.uniform(seeds_lib.derive(seeds, TARGET_SALT), ())
    offset = 1 + tf.minimum(tf.cast(u * (num_classes - 1), tf.int64), num_classes - 2)
    return (tf.cast(y, tf.int64) + offset) % num_classes


def FGSM(eps, norm="linf", random_start=False, step_size=None, loss="ce", targeted=False, bn="inference",
         precision="float32"):
    """The fast gradient sign method, with an optional random start.

    Goodfellow et al., "Explaining and harnessing adversarial examples",
    arXiv 1412.6572; with `random_start=True` it is FGSM-RS from Wong et al.,
    "Fast is better than free: revisiting adversarial training",
    arXiv 2001.03994, whose default step is `1.25 * eps`.

    Args:
        eps: float > 0.
        norm: "linf" or "l2" (the L2 version is the fast gradient method).
        random_start: start uniformly in the eps-ball.
        step_size: default `eps`, or `1.25 * eps` with a random start.
        loss: "ce" or "margin".
        targeted: descend towards target classes given as `y`.
        bn, precision: see `PGD`.

    Returns:
        A one-step `PGD` that returns its last iterate.
    """
    eps = base.number("eps", eps)
    if step_size is None:
        step_size = 1.25 * eps if random_start else eps
    return PGD(
        eps=eps,
        norm=norm,
        steps=1,
        step_size=step_size,
        loss=loss,
        init="uniform" if random_start else "none",
        targeted=targeted,
        select="last",
        bn=bn,
        precision=precision,
        name="fgsm_rs" if random_start else "fgsm",
    )


def NFGSM(eps, norm="linf", noise=None, step_size=None, bn="inference", precision="float32"):
    """N-FGSM: FGSM from a wide random start, not projected back to the eps-ball.

    de Jorge et al., "Make some noise: reliable and efficient single-step
    adversarial training", arXiv 2202.01181. The start is uniform noise of
    radius `noise` (default 2 eps), the step is `step_size` (default eps), and
    only [0, 1] clipping follows, so the training perturbation may reach
    `noise + step_size` = 3 eps. The paper shows this avoids the catastrophic
    overfitting of FGSM-RS at no extra cost. A training attack: evaluate with
    PGD or APGD at eps.

    Returns:
        A one-step `PGD` whose `eps` is `noise + step_size` (the projection
        then never binds) and that returns its last iterate.
    """
    eps = base.number("eps", eps)
    noise = 2.0 * eps if noise is None else base.number("noise", noise)
    step_size = eps if step_size is None else base.number("step_size", step_size)
    return PGD(
        eps=noise + step_size,
        norm=norm,
        steps=1,
        step_size=step_size,
        init="uniform",
        init_radius=noise,
        select="last",
        bn=bn,
        precision=precision,
        name="nfgsm",
    )


position_seeds = base.position_seeds
