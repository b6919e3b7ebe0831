"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T): PGD with momentum and a step size that adapts itself."""

import dataclasses
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from tfrobust.attacks import base
from tfrobust.attacks import losses as losses_lib
from tfrobust.attacks import projections
from tfrobust import seeds as seeds_lib

_LOSSES = ("ce", "dlr", "dlr_targeted")
_DEFAULT_NAMES = {"ce": "apgd-ce", "dlr": "apgd-dlr", "dlr_targeted": "apgd-t"}


def checkpoints(steps):
    """The iterations at which APGD may halve its step size, and their window lengths.

    Croce & Hein (arXiv 2003.01690, section 3.2) place checkpoints at
    `w_j = ceil(p_j * N)` with `p_0 = 0`, `p_1 = 0.22` and
    `p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`. This is the integer form
    their reference code uses, which AutoAttack's published numbers come from:
    the first window is `max(int(0.22 N), 1)` iterations and each next one is
    `max(int(0.03 N), 1)` shorter, but never below `max(int(0.06 N), 1)`.

    Args:
        steps: int, the number of iterations N.

    Returns:
        `(marks, windows)`: 0-based iterations after which the check runs, and
        the number of iterations each check looks back over.
    """
    first = max(int(0.22 * steps), 1)
    shortest = max(int(0.06 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    marks, windows = [], []
    window, i = first, first - 1
    while i < steps:
        marks.append(i)
        windows.append(window)
        window = max(window - shrink, shortest)
        i += window
    return marks, windows


def large_eps_stages(steps):
    """The radii (as multiples of eps) and iterations of l1-APGD's `large_eps` schedule.

    30% of the iterations (rounded up) at 3 eps, as many at 2 eps, the rest
    at eps, as the reference code splits them: 100 iterations are 30 / 30 /
    40. Below 3 iterations the reference would run more than asked; here
    the larger radii give way instead.

    Args:
        steps: int, the iterations in all.

    Returns:
        `((3.0, n1), (2.0, n2), (1.0, n3))`, with `n1 + n2 + n3 == steps` and
        every `n >= 0`.
    """
    first = min(math.ceil(0.3 * steps), steps // 2)
    return ((3.0, first), (2.0, first), (1.0, steps - 2 * first))


def _checkpoint_masks(steps):
    """Per iteration: whether it is a checkpoint, and the length of the window it closes (0 elsewhere)."""
    marks, windows = checkpoints(steps)
    is_mark = np.zeros(steps, bool)
    window_of = np.zeros(steps, np.float32)
    is_mark[marks] = True
    window_of[marks] = windows
    return tf.constant(is_mark), tf.constant(window_of)


def _start(x, seeds, eps, norm):
    # APGD starts on the sphere of radius eps, not inside the ball as PGD's
    # uniform start does (reference code: x + eps * t / ||t||); under L1, at
    # Gaussian noise projected onto the ball and the box.
    if norm == "l1":
        return projections.l1_project(x + seeds_lib.normal(seeds, x.shape[1:]), x, eps)
    if norm == "linf":
        t = seeds_lib.uniform(seeds, x.shape[1:], -1.0, 1.0)
        scale = tf.reduce_max(tf.abs(t), axis=[1, 2, 3], keepdims=True)
    else:
        t = seeds_lib.normal(seeds, x.shape[1:])
        scale = tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True))
    return tf.clip_by_value(x + eps * t / (scale + 1e-12), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class APGD(base.AttackMixin):
    """Auto-PGD: momentum and a step size halved when progress stalls.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", arXiv 2003.01690, Algorithm 1.
    The step size starts at `2 * eps`; at each checkpoint (see `checkpoints`)
    it is halved for the examples where the loss rose in at most `rho` of the
    window's iterations, or where it was not halved at the last checkpoint and
    the best loss has not improved since; those examples restart from their
    best point. Steps combine the projected gradient step with the previous
    move: `x <- P(x + a (z - x) + (1 - a) (x - x_prev))`, `a = 0.75` after the
    first step. Linf uses signed, L2 normalised gradients.

    L1 is l1-APGD (Croce & Hein, "Mind the box: l1-APGD for sparse
    adversarial attacks on image classifiers", arXiv 2103.01208): no
    momentum; each step moves the coordinates with the largest gradient
    magnitudes, a share `k` of them (20% at first), by `step / (their count)`
    each along the gradient's sign, then projects exactly onto the
    intersection of the L1 ball and the box (`projections.l1_project`). The
    step starts at `eps`. Every `max(int(0.04 * steps), 1)` iterations `k`
    becomes the best point's share of changed coordinates over 1.5; where
    that count fell by more than 5% since the last check the step is reset
    to `eps` and the run restarts from the best point, elsewhere the step is
    divided by 1.5, never below `eps / 10`. With `large_eps` (AutoAttack's
    L1 standard version) the iterations are split 30% / 30% / 40% over the
    radii `3 eps`, `2 eps` and `eps`, each stage starting from the previous
    one's best point projected onto the smaller ball, with the step share
    of a fresh run (see `_l1_stage`); only the last stage, within `eps`, can
    break a point.

    APGD-T (`loss="dlr_targeted"`) runs once per target: the classes with the
    2nd, 3rd, ... largest clean logits, `target_classes` of them (9 in
    AutoAttack's standard version), each with the targeted DLR loss. An
    example counts as broken when it is misclassified, whatever the class.

    Distance: Linf, L2 or L1, in [0, 1] pixel units; results lie in the
    eps-ball and in [0, 1]. A pure function of `(model, x, y, seeds)` that
    compiles under XLA; each example's result depends only on its own input
    and seed.

    Args:
        eps: float > 0.
        norm: "linf", "l2" or "l1".
        steps: iterations per run (AutoAttack: 100).
        restarts: random restarts per run (AutoAttack standard: 1).
        loss: "ce" (APGD-CE), "dlr" (APGD-DLR) or "dlr_targeted" (APGD-T).
        target_classes: targets for APGD-T (at most num_classes - 1).
        rho: the share of increasing steps below which the step is halved
            (Linf and L2).
        momentum: `a` above, after the first step (Linf and L2).
        large_eps: L1 only: the radii 3 eps, 2 eps, eps in turn (the
            reference's `use_largereps`).
        eot: gradients averaged per step over this many forward passes
            (expectation over transformation, for randomised models: the
            `rand` version of AutoAttack uses 20).
        bn: "inference" or "batch_stats"; see `PGD`. Never updates BatchNorm.
        name: for reports; default from the loss ("apgd-ce", "apgd-dlr",
            "apgd-t").

    Returns (when called with `model, x, y, seeds`):
        float32 adversarial examples: for every example that was
        misclassified at some iterate, that iterate; otherwise the iterate
        with the highest loss.
    """

    eps: float
    norm: str = "linf"
    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    target_classes: int = 9
    rho: float = 0.75
    momentum: float = 0.75
    eot: int = 1
    large_eps: bool = False
    bn: str = "inference"
    name: Optional[str] = None

    # APGD-T picks targets itself; as an attack it is untargeted.
    targeted = False

    def __post_init__(self):
        base.check_eps(self)
        if self.norm not in projections.NORMS:
            raise ValueError(f"norm must be one of {projections.NORMS}. Received: norm={self.norm!r}")
        if not isinstance(self.large_eps, bool):
            raise ValueError(f"large_eps must be a bool. Received: large_eps={self.large_eps!r}")
        if self.large_eps and self.norm != "l1":
            raise ValueError(f"large_eps is for norm='l1' only. Received: norm={self.norm!r}, large_eps=True")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}. Received: loss={self.loss!r}")
        base.check_counts(self, ("steps", "restarts", "target_classes", "eot"))
        for arg in ("rho", "momentum"):
            value = base.number(arg, getattr(self, arg))
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{arg} must lie in (0, 1]. Received: {arg}={value}")
            object.__setattr__(self, arg, value)
        if self.bn not in ("inference", "batch_stats"):
            raise ValueError(f"bn must be 'inference' or 'batch_stats'. Received: bn={self.bn!r}")
        if self.name is None:
            object.__setattr__(self, "name", _DEFAULT_NAMES[self.loss])

    def __call__(self, model, x, y, seeds=None):
        return self.call_runs(model, x, y, seeds)

    def run_keys(self, num_classes):
        """`(target rank, restart)` of each run, in order (see `base.Run`)."""
        targets = [0] if self.loss != "dlr_targeted" else range(1, min(self.target_classes, num_classes - 1) + 1)
        return [(t, r) for t in targets for r in range(self.restarts)]

    def call_runs(self, model, x, y, seeds=None, only=None):
        """The attack, or with `only=(target rank, restart)` that run alone.

        `only` may hold int32 scalar tensors, so that one traced function
        makes any of the runs.
        """
        x, y, seeds = base.prepare(x, y, seeds, num_classes=base.output_classes(model))
        forward = base.forward_fn(model, self.bn)
        eps = tf.constant(self.eps, tf.float32)
        batch = tf.shape(x)[0]
        best = (x, tf.zeros([batch], tf.bool), tf.fill([batch], -np.inf))

        ranking, num_classes = None, None
        if self.loss == "dlr_targeted":
            clean_logits = tf.cast(forward(x), tf.float32)
            num_classes = int(clean_logits.shape[-1])
            if num_classes < 4:
                raise ValueError(
                    f"APGD-T's targeted DLR loss needs at least 4 classes. Received: {num_classes}"
                )
            ranking = tf.argsort(clean_logits, axis=-1, direction="DESCENDING")
        single_run = self._l1_run if self.norm == "l1" else self._single_run
        for target_rank, restart in self.run_keys(num_classes) if only is None else [(only[0], only[1])]:
            if ranking is None:
                loss_fn = losses_lib.get(self.loss)
            else:
                targets = tf.gather(ranking, target_rank, axis=1)
                loss_fn = lambda z, lab, tg=targets: losses_lib.dlr_targeted(z, lab, tg)  # noqa: E731
            run_seeds = seeds_lib.derive(seeds, 3000 + 100 * target_rank + restart)
            best = _keep_better(best, single_run(forward, loss_fn, x, y, run_seeds, eps))
        return tf.stop_gradient(best[0])

    def _loss_and_grad(self, forward, loss_fn, x_adv, y):
        def one_pass():
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x_adv)
                logits = tf.cast(forward(x_adv), tf.float32)
                per_example = loss_fn(logits, y)
                total = tf.reduce_sum(per_example)
            return logits, per_example, tape.gradient(
                total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        logits, loss, grad = one_pass()
        if self.eot > 1:
            # A randomised model: average the loss and gradient over passes.
            def body(i, loss_sum, grad_sum, _):
                lg, ls, gr = one_pass()
                return i + 1, loss_sum + ls, grad_sum + gr, lg

            _, loss, grad, logits = tf.while_loop(
                lambda i, *_: i < self.eot, body, (tf.constant(1), loss, grad, logits)
            )
            loss, grad = loss / self.eot, grad / self.eot
        return logits, loss, grad

    def _single_run(self, forward, loss_fn, x, y, seeds, eps):
        threat = projections.get(self.norm)
        is_mark, window_of = _checkpoint_masks(self.steps)
        y64 = tf.cast(y, tf.int64)

        def misclassified(logits):
            return tf.not_equal(tf.argmax(logits, -1, output_type=tf.int64), y64)

        x0 = _start(x, seeds, eps, self.norm)
        logits, loss, grad = self._loss_and_grad(forward, loss_fn, x0, y)
        batch = tf.shape(x)[0]
        step = tf.fill([batch, 1, 1, 1], 2.0 * eps)
        fooled = misclassified(logits)
        state = dict(
            x_adv=x0, x_prev=x0, grad=grad, step=step,
            x_best=x0, grad_best=grad, loss_best=loss,
            loss_prev=loss, increases=tf.zeros([batch]),
            best_at_check=loss, halved_at_check=tf.ones([batch], tf.bool),
            fooled=fooled, x_fooled=x0,
        )

        def body(i, s):
            a = tf.where(i == 0, 1.0, self.momentum)
            z = threat.project(s["x_adv"] + threat.step(s["grad"], s["step"]), x, eps)
            x_new = threat.project(
                s["x_adv"] + a * (z - s["x_adv"]) + (1.0 - a) * (s["x_adv"] - s["x_prev"]), x, eps
            )
            logits, loss, grad = self._loss_and_grad(forward, loss_fn, x_new, y)
            hit = misclassified(logits)
            # The first iterate that fools the model is kept: later ones on a
            # flat loss move by rounding noise that differs under XLA.
            first = tf.logical_and(hit, tf.logical_not(s["fooled"]))
            x_fooled = tf.cond(
                tf.reduce_any(first),
                lambda: tf.where(first[:, None, None, None], x_new, s["x_fooled"]),
                lambda: s["x_fooled"],
            )
            fooled = tf.logical_or(s["fooled"], hit)
            increases = s["increases"] + tf.cast(loss > s["loss_prev"], tf.float32)
            better = loss > s["loss_best"]
            b4 = better[:, None, None, None]
            x_best = tf.where(b4, x_new, s["x_best"])
            grad_best = tf.where(b4, grad, s["grad_best"])
            loss_best = tf.where(better, loss, s["loss_best"])

            # Condition 1 (oscillation) or condition 2 (no halving and no
            # progress since the last checkpoint); the reference code fires
            # condition 1 on `<=`, and so do we.
            at_mark = tf.gather(is_mark, i)
            oscillating = increases <= self.rho * tf.gather(window_of, i)
            stalled = tf.logical_and(
                tf.logical_not(s["halved_at_check"]), s["best_at_check"] >= loss_best
            )
            halve = tf.logical_and(at_mark, tf.logical_or(oscillating, stalled))

            def restart_from_best():
                h4 = halve[:, None, None, None]
                return tf.where(h4, x_best, x_new), tf.where(h4, grad_best, grad)

            # Selecting image-sized tensors only at checkpoints keeps an APGD
            # iteration as cheap as a PGD one.
            x_next, grad_next = tf.cond(at_mark, restart_from_best, lambda: (x_new, grad))
            return i + 1, dict(
                x_adv=x_next,
                x_prev=s["x_adv"],
                grad=grad_next,
                step=tf.where(halve[:, None, None, None], s["step"] / 2.0, s["step"]),
                x_best=x_best, grad_best=grad_best, loss_best=loss_best,
                loss_prev=loss,
                increases=tf.where(at_mark, tf.zeros_like(increases), increases),
                best_at_check=tf.where(at_mark, loss_best, s["best_at_check"]),
                halved_at_check=tf.where(at_mark, halve, s["halved_at_check"]),
                fooled=fooled, x_fooled=x_fooled,
            )

        _, state = tf.while_loop(lambda i, _: i < self.steps, body, (tf.constant(0), state))
        fooled = state["fooled"]
        x_out = tf.where(fooled[:, None, None, None], state["x_fooled"], state["x_best"])
        return x_out, fooled, state["loss_best"]


    def _l1_run(self, forward, loss_fn, x, y, seeds, eps):
        if not self.large_eps:
            x_best, fooled, loss_best, x_fooled = self._l1_stage(
                forward, loss_fn, x, y, eps, self.steps, _start(x, seeds, eps, "l1"))
        else:
            x_best = _start(x, seeds, 3.0 * eps, "l1")
            for factor, steps in large_eps_stages(self.steps):
                x_best, fooled, loss_best, x_fooled = self._l1_stage(
                    forward, loss_fn, x, y, factor * eps, steps, projections.l1_project(x_best, x, factor * eps))
        x_out = tf.where(fooled[:, None, None, None], x_fooled, x_best)
        return x_out, fooled, loss_best

    def _l1_stage(self, forward, loss_fn, x, y, eps, steps, x0):
        """l1-APGD from `x0` within radius `eps`: `(x_best, fooled, loss_best, x_fooled)`.

        Every stage starts with a step share of 20%. The reference starts a
        stage of `large_eps` at the starting point's own sparsity over 1.5,
        but measures it in float arithmetic that leaves residues of ~1e-8 on
        about a third of the coordinates its projection removed, so that it
        reads about 20% too (where the exact sparsity is a few per cent). A
        residue depends on the last bits of the point, which differ between
        XLA and eager execution; the fixed share does not. The L1 ensemble is
        compared with the reference point by point by
        `benchmarks/autoattack_reference.py --norm L1` (benchmarks/README.md).
        """
        y64 = tf.cast(y, tf.int64)
        batch = tf.shape(x)[0]
        n = int(np.prod(x.shape[1:]))
        every = max(int(0.04 * steps), 1)

        def changed(point):  # L0 distance to x, float32 [B]
            return tf.reduce_sum(tf.cast(tf.reshape(point - x, [-1, n]) != 0.0, tf.float32), 1)

        def misclassified(logits):
            return tf.not_equal(tf.argmax(logits, -1, output_type=tf.int64), y64)

        logits, loss, grad = self._loss_and_grad(forward, loss_fn, x0, y)
        fooled = misclassified(logits)
        share, changed_before = tf.fill([batch], 0.2), tf.fill([batch], float(n))
        state = dict(
            x_adv=x0, grad=grad, step=tf.fill([batch], eps), share=share, changed_before=changed_before,
            x_best=x0, grad_best=grad, loss_best=loss, fooled=fooled, x_fooled=x0,
        )

        def body(i, s):
            flat = tf.reshape(s["grad"], [-1, n])
            magnitude = tf.abs(flat)
            # The coordinates whose gradient magnitude reaches the one at rank (1 - share) * n.
            rank = tf.cast(tf.clip_by_value((1.0 - s["share"]) * n, 0.0, n - 1.0), tf.int32)
            threshold = tf.gather(tf.sort(magnitude, axis=1), rank[:, None], batch_dims=1)
            direction = tf.sign(flat) * tf.cast(magnitude >= threshold, tf.float32)
            direction /= tf.reduce_sum(tf.abs(direction), axis=1, keepdims=True) + 1e-10
            x_new = projections.l1_project(
                s["x_adv"] + s["step"][:, None, None, None] * tf.reshape(direction, tf.shape(x)), x, eps)
            logits, loss, grad = self._loss_and_grad(forward, loss_fn, x_new, y)
            hit = misclassified(logits)
            first = tf.logical_and(hit, tf.logical_not(s["fooled"]))
            x_fooled = tf.where(first[:, None, None, None], x_new, s["x_fooled"])
            better = loss > s["loss_best"]
            b4 = better[:, None, None, None]
            x_best = tf.where(b4, x_new, s["x_best"])
            grad_best = tf.where(b4, grad, s["grad_best"])
            loss_best = tf.where(better, loss, s["loss_best"])
            at_mark = tf.equal((i + 1) % every, 0)

            def adapt():
                now = changed(x_best)
                # A sparser best point than at the last check: start again from it at the full step.
                reset = now < 0.95 * s["changed_before"]
                step = tf.clip_by_value(tf.where(reset, eps, s["step"] / 1.5), eps / 10.0, eps)
                r4 = reset[:, None, None, None]
                return (tf.where(r4, x_best, x_new), tf.where(r4, grad_best, grad), step,
                        now / n / 1.5, now)

            x_next, grad_next, step, share, changed_before = tf.cond(
                at_mark, adapt, lambda: (x_new, grad, s["step"], s["share"], s["changed_before"]))
            return i + 1, dict(
                x_adv=x_next, grad=grad_next, step=step, share=share, changed_before=changed_before,
                x_best=x_best, grad_best=grad_best, loss_best=loss_best,
                fooled=tf.logical_or(s["fooled"], hit), x_fooled=x_fooled,
            )

        _, state = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), state))
        return state["x_best"], state["fooled"], state["loss_best"], state["x_fooled"]


def _keep_better(best, candidate):
    # Fooling beats not fooling; the first fooling point found is kept; among
    # the rest, the higher loss wins.
    bx, bf, bl = best
    cx, cf, cl = candidate
    better = tf.logical_or(
        tf.logical_and(cf, tf.logical_not(bf)),
        tf.logical_and(tf.logical_not(tf.logical_or(cf, bf)), cl > bl),
    )
    return (
        tf.where(better[:, None, None, None], cx, bx),
        tf.logical_or(bf, cf),
        tf.where(better, cl, bl),
    )
