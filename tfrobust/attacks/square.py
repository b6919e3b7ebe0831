"""The Square attack: score-based black-box random search, the ensemble's guard against masking."""

import dataclasses

import numpy as np
import tensorflow as tf

from tfrobust.attacks import base
from tfrobust.attacks import losses as losses_lib
from tfrobust.data import seeds as seeds_lib

_LOSSES = ("margin", "ce")
# Iteration milestones (out of 10,000) at which the square's share of the
# image halves, from the reference implementation's `p_selection`; budgets
# other than 10,000 queries rescale them.
_MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(iteration, queries, p_init):
    """The share of pixels the square covers at an iteration (Andriushchenko et al., sec. 3.1).

    Args:
        iteration: int, 0-based.
        queries: the query budget.
        p_init: the initial share.

    Returns:
        float.
    """
    it = int(iteration / queries * 10000)
    halvings = sum(it > m for m in _MILESTONES)
    return p_init / 2 ** halvings


@dataclasses.dataclass(frozen=True)
class Square(base.AttackMixin):
    """The Square attack under Linf: random search with square-shaped updates.

    Andriushchenko et al., "Square Attack: a query-efficient black-box
    adversarial attack via random search", arXiv 1912.00049, Algorithm 1 with
    the Linf proposal distribution (Algorithm 2). It uses only the model's
    scores, never its gradients, so gradient masking cannot stop it; in the
    AutoAttack ensemble (Croce & Hein, arXiv 2003.01690) it is the guard
    against defences that only obscure gradients.

    Start: vertical stripes, each column and channel at `x +/- eps`. Each
    iteration proposes, per example, a square of side
    `s = round(sqrt(p * H * W))` at a random position, sets it to `x +/- eps`
    with a random sign per channel, and keeps the proposal if it lowers the
    loss. `p` starts at `p_init` and halves at the paper's milestones,
    rescaled to the budget. Examples stop changing once misclassified.

    Departures from the reference code, for per-element determinism: the
    square's position and signs are drawn per example from its own seed
    (the reference shares them across the batch), and a proposal identical
    to the current point is not redrawn (it costs one query).

    Distance: Linf, in [0, 1] pixel units; results lie in the eps-ball and in
    [0, 1]. A pure function of `(model, x, y, seeds)`; compiles under XLA.

    Args:
        eps: float > 0.
        norm: "linf" (the L2 version is not implemented).
        queries: the query budget per restart, the start included (AutoAttack: 5000).
        p_init: initial share of the image a square covers (AutoAttack: 0.8).
        loss: "margin" (`z_y - max_{j != y} z_j`, minimised, as AutoAttack)
            or "ce" (cross-entropy, maximised).
        restarts: independent runs; an example fooled by any is fooled.
        bn: "inference" or "batch_stats"; see `PGD`. Never updates BatchNorm.
        name: for reports.
    """

    eps: float
    norm: str = "linf"
    queries: int = 5000
    p_init: float = 0.8
    loss: str = "margin"
    restarts: int = 1
    bn: str = "inference"
    name: str = "square"

    targeted = False

    def __post_init__(self):
        eps = base.number("eps", self.eps)
        if not eps > 0:
            raise ValueError(f"eps must be > 0. Received: eps={self.eps}")
        object.__setattr__(self, "eps", eps)
        if self.norm == "l2":
            raise NotImplementedError(
                "The L2 Square attack is not implemented; use norm='linf', or APGD for L2. "
                "Received: norm='l2'"
            )
        if self.norm != "linf":
            raise ValueError(f"norm must be 'linf'. Received: norm={self.norm!r}")
        for arg in ("queries", "restarts"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1. Received: {arg}={value!r}")
        p_init = base.number("p_init", self.p_init)
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must lie in (0, 1]. Received: p_init={self.p_init}")
        object.__setattr__(self, "p_init", p_init)
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}. Received: loss={self.loss!r}")
        if self.bn not in ("inference", "batch_stats"):
            raise ValueError(f"bn must be 'inference' or 'batch_stats'. Received: bn={self.bn!r}")

    def __call__(self, model, x, y, seeds=None):
        x, y, seeds = base.prepare(x, y, seeds)
        forward = base.forward_fn(model, self.bn)
        batch = tf.shape(x)[0]
        best = (x, tf.zeros([batch], tf.bool), tf.fill([batch], np.inf))
        for restart in range(self.restarts):
            run = self._single_run(forward, x, y, seeds_lib.derive(seeds, 5000 + restart))
            best = _keep_better(best, run)
        return tf.stop_gradient(best[0])

    def _scores(self, forward, x_adv, y):
        logits = tf.cast(forward(x_adv), tf.float32)
        margin = -losses_lib.margin(logits, y)  # > 0 while correctly classified
        if self.loss == "margin":
            return margin, margin
        return margin, -losses_lib.cross_entropy(logits, y)

    def _single_run(self, forward, x, y, seeds):
        height, width, channels = (int(d) for d in x.shape[1:])
        eps = tf.constant(self.eps, tf.float32)
        # Side lengths per iteration, computed in Python: the schedule is static.
        sides = [
            min(max(int(round(np.sqrt(p_schedule(i, self.queries, self.p_init) * height * width))), 1),
                min(height, width) - 1 if min(height, width) > 1 else 1)
            for i in range(self.queries)
        ]
        sides = tf.constant(sides, tf.int32)

        stripes = tf.sign(seeds_lib.uniform(seeds, (1, width, channels), -1.0, 1.0))
        stripes = tf.where(tf.equal(stripes, 0.0), 1.0, stripes)
        x_best = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
        margin, loss = self._scores(forward, x_best, y)

        rows = tf.range(height)[None, :, None, None]
        cols = tf.range(width)[None, None, :, None]

        def body(i, x_best, margin, loss):
            s = tf.gather(sides, i)
            step_seeds = seeds_lib.derive(seeds, i)
            u = seeds_lib.uniform(step_seeds, (2 + channels,))
            top = tf.cast(u[:, 0] * tf.cast(height - s, tf.float32), tf.int32)
            left = tf.cast(u[:, 1] * tf.cast(width - s, tf.float32), tf.int32)
            signs = tf.where(u[:, 2:] < 0.5, -1.0, 1.0)[:, None, None, :]
            window = tf.logical_and(
                tf.logical_and(rows >= top[:, None, None, None], rows < (top + s)[:, None, None, None]),
                tf.logical_and(cols >= left[:, None, None, None], cols < (left + s)[:, None, None, None]),
            )
            proposal = tf.where(window, tf.clip_by_value(x + eps * signs, 0.0, 1.0), x_best)
            new_margin, new_loss = self._scores(forward, proposal, y)
            active = margin > 0.0
            accept = tf.logical_and(active, new_loss < loss)
            a4 = accept[:, None, None, None]
            return (
                i + 1,
                tf.where(a4, proposal, x_best),
                tf.where(accept, new_margin, margin),
                tf.where(accept, new_loss, loss),
            )

        _, x_best, margin, loss = tf.while_loop(
            lambda i, *_: i < self.queries, body, (tf.constant(1), x_best, margin, loss)
        )
        return x_best, margin <= 0.0, loss


def _keep_better(best, candidate):
    # Fooling beats not fooling; the first fooling run is kept; among the
    # rest, the lower loss wins.
    bx, bf, bl = best
    cx, cf, cl = candidate
    better = tf.logical_or(
        tf.logical_and(cf, tf.logical_not(bf)),
        tf.logical_and(tf.logical_not(tf.logical_or(cf, bf)), cl < bl),
    )
    return (
        tf.where(better[:, None, None, None], cx, bx),
        tf.logical_or(bf, cf),
        tf.where(better, cl, bl),
    )
