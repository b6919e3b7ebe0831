"""FAB and FAB-T: the fast adaptive boundary attack, a minimum-norm attack under Linf, L2 and L1."""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from tfrobust.attacks import base, projections
from tfrobust import seeds as seeds_lib

# Below this magnitude a gradient entry counts as zero in the L2 and L1 projections,
# as in the reference code (`fab_projections.projection_l2`).
_ZERO_WEIGHT = 1e-8
# The smallest step norm `alpha` divides by (the reference's `a0` floor).
_MIN_STEP = 1e-8


def project_linf(t, w, b):
    """The smallest Linf move from `t` onto the hyperplane `<w, z> = b` that stays in [0, 1].

    Solves `min ||d||_inf` subject to `<w, t + d> = b` and `0 <= t + d <= 1`
    per row (Croce & Hein, arXiv 1907.02044, sec. 3.1 and their Prop. 3 for
    the box). With the hyperplane oriented so that `c = <w, t> - b >= 0`, the
    solution moves every coordinate by `min(lam, room_i)` against the sign of
    `w_i`, where `room_i` is how far it can move before leaving the box, and
    `lam` is the smallest radius with `sum_i |w_i| min(lam, room_i) = c`. That
    sum is piecewise linear in `lam` with kinks at the sorted `room_i`, so `lam`
    is found in closed form on the segment where it crosses `c`. If no radius
    reaches the hyperplane inside the box, the move goes to the box corner.

    Args:
        t: float32 `[N, D]`, points in [0, 1].
        w: float32 `[N, D]`, normals.
        b: float32 `[N]`, offsets.

    Returns:
        float32 `[N, D]`, the moves `d`.
    """
    c = tf.reduce_sum(w * t, 1) - b
    flip = tf.where(c >= 0.0, 1.0, -1.0)
    w, c = w * flip[:, None], c * flip
    active = tf.not_equal(w, 0.0)
    weight = tf.abs(w)
    room = tf.where(w > 0.0, t, 1.0 - t)
    order = tf.argsort(room, axis=1)
    rooms = tf.gather(room, order, batch_dims=1)
    weights = tf.gather(weight, order, batch_dims=1)
    below = tf.cumsum(weights * rooms, axis=1, exclusive=True)  # sum over coordinates capped before k
    from_k = tf.cumsum(weights, axis=1, reverse=True)  # |w| of coordinates not capped at rooms[k]
    reach = below + rooms * from_k  # sum |w_i| min(rooms[k], room_i)
    k = tf.reduce_sum(tf.cast(reach < c[:, None], tf.int32), 1)
    feasible = k < tf.shape(w)[1]
    k = tf.minimum(k, tf.shape(w)[1] - 1)
    lam = (c - tf.gather(below, k, batch_dims=1)) / tf.maximum(tf.gather(from_k, k, batch_dims=1), 1e-30)
    lam = tf.where(feasible, tf.maximum(lam, 0.0), np.inf)
    d = -tf.sign(w) * tf.minimum(lam[:, None], room)
    return tf.where(active, d, 0.0)


def _oriented(t, w, b):
    """The hyperplane turned so that `c = <w, t> - b >= 0`: `(w, c, active, |w|, room)`.

    `active` marks the entries above `_ZERO_WEIGHT` (the others get weight
    0), and `room` is how far each coordinate can move against the sign of
    `w` before it leaves [0, 1].
    """
    c = tf.reduce_sum(w * t, 1) - b
    flip = tf.where(c >= 0.0, 1.0, -1.0)
    w, c = w * flip[:, None], c * flip
    active = tf.abs(w) > _ZERO_WEIGHT
    return w, c, active, tf.where(active, tf.abs(w), 0.0), tf.where(w > 0.0, t, 1.0 - t)


def project_l2(t, w, b):
    """The smallest L2 move from `t` onto the hyperplane `<w, z> = b` that stays in [0, 1].

    Solves `min ||d||_2` subject to `<w, t + d> = b` and `0 <= t + d <= 1`
    per row (Croce & Hein, arXiv 1907.02044, sec. 3.1). By the KKT conditions
    the solution is the unconstrained one, `-mu * w`, clipped to the box:
    with `c = <w, t> - b >= 0`, each coordinate moves by
    `min(mu |w_i|, room_i)` against the sign of `w_i`, and `mu` solves
    `sum_i |w_i| min(mu |w_i|, room_i) = c`, a piecewise-linear equation with
    kinks at the sorted `room_i / |w_i|`. If the box corner does not reach
    the hyperplane, the move goes to the corner. Entries with
    `|w_i| <= 1e-8` do not move (the reference's threshold).

    Args:
        t: float32 `[N, D]`, points in [0, 1].
        w: float32 `[N, D]`, normals.
        b: float32 `[N]`, offsets.

    Returns:
        float32 `[N, D]`, the moves `d`.
    """
    w, c, active, weight, room = _oriented(t, w, b)
    kink = tf.where(active, room / tf.where(active, weight, 1.0), np.inf)
    order = tf.argsort(kink, axis=1)
    kinks = tf.gather(kink, order, batch_dims=1)
    weights = tf.gather(weight, order, batch_dims=1)
    rooms = tf.gather(room, order, batch_dims=1)
    below = tf.cumsum(weights * rooms, axis=1, exclusive=True)
    from_k = tf.cumsum(tf.square(weights), axis=1, reverse=True)
    # Inactive coordinates sort last with an infinite kink and add nothing.
    reach = below + tf.where(from_k > 0.0, kinks * from_k, 0.0)
    k = tf.reduce_sum(tf.cast(reach < c[:, None], tf.int32), 1)
    feasible = k < tf.shape(w)[1]
    k = tf.minimum(k, tf.shape(w)[1] - 1)
    mu = (c - tf.gather(below, k, batch_dims=1)) / tf.maximum(tf.gather(from_k, k, batch_dims=1), 1e-30)
    mu = tf.where(feasible, tf.maximum(mu, 0.0), np.inf)
    d = -tf.sign(w) * tf.minimum(mu[:, None] * weight, room)
    return tf.where(active, d, 0.0)


def project_l1(t, w, b):
    """The smallest L1 move from `t` onto the hyperplane `<w, z> = b` that stays in [0, 1].

    Solves `min ||d||_1` subject to `<w, t + d> = b` and `0 <= t + d <= 1`
    per row (Croce & Hein, arXiv 1907.02044, sec. 3.1). A linear program:
    with `c = <w, t> - b >= 0`, moving coordinate `i` by `m_i` (at most its
    `room_i` in the box) against the sign of `w_i` lowers `<w, z>` by
    `|w_i| m_i`, so the cheapest moves take the coordinates in decreasing
    order of `|w_i|`, each to the box, until the next one reaches the
    hyperplane part way. If even every coordinate at the box falls short,
    the move goes to the box corner. Entries with `|w_i| <= 1e-8` do not
    move (the reference's threshold).

    Args:
        t: float32 `[N, D]`, points in [0, 1].
        w: float32 `[N, D]`, normals.
        b: float32 `[N]`, offsets.

    Returns:
        float32 `[N, D]`, the moves `d`.
    """
    w, c, active, weight, room = _oriented(t, w, b)
    order = tf.argsort(weight, axis=1, direction="DESCENDING", stable=True)
    weights = tf.gather(weight, order, batch_dims=1)
    rooms = tf.gather(room, order, batch_dims=1)
    through = tf.cumsum(weights * rooms, axis=1)  # what the first k + 1 coordinates at the box remove
    full = tf.reduce_sum(tf.cast(through < c[:, None], tf.int32), 1)  # coordinates moved all the way
    feasible = full < tf.shape(w)[1]
    k = tf.minimum(full, tf.shape(w)[1] - 1)
    before = tf.gather(through, k, batch_dims=1) - tf.gather(weights * rooms, k, batch_dims=1)
    partial = (c - before) / tf.maximum(tf.gather(weights, k, batch_dims=1), 1e-30)
    position = tf.range(tf.shape(w)[1])[None, :]
    moved = tf.where(position < k[:, None], rooms,
                     tf.where(tf.equal(position, k[:, None]), tf.minimum(partial[:, None], rooms), 0.0))
    moved = tf.where(feasible[:, None], moved, rooms)
    # Back to the coordinates' own order.
    moved = tf.gather(moved, tf.argsort(order, axis=1), batch_dims=1)
    return tf.where(active, -tf.sign(w) * moved, 0.0)


_PROJECTIONS = {"linf": project_linf, "l2": project_l2, "l1": project_l1}


def _norm(v, norm):
    # Per-row norm of [N, D].
    if norm == "linf":
        return tf.reduce_max(tf.abs(v), 1)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(v), 1)
    return tf.sqrt(tf.reduce_sum(tf.square(v), 1))


def _dual_norm(v, norm):
    # Per-row dual norm over the last axis: L1 for Linf, Linf for L1, L2 for L2.
    if norm == "linf":
        return tf.reduce_sum(tf.abs(v), -1)
    if norm == "l1":
        return tf.reduce_max(tf.abs(v), -1)
    return tf.sqrt(tf.reduce_sum(tf.square(v), -1))


@dataclasses.dataclass(frozen=True)
class FAB(base.AttackMixin):
    """The fast adaptive boundary attack (FAB, and FAB-T with target classes).

    Croce & Hein, "Minimally distorted adversarial examples with a fast
    adaptive boundary attack", arXiv 1907.02044, Algorithm 1. FAB looks for
    the smallest perturbation that changes the prediction. Each iteration
    linearises the classifier at the current point `x1`, takes the decision
    hyperplane nearest in the threat model's norm (FAB: over all classes;
    FAB-T: towards one target class), and projects onto it, within [0, 1],
    both `x1` (move `d1`) and the clean point `x` (move `d2`). The next point
    is the biased combination
    `(x1 + eta d1) (1 - alpha) + (x + eta d2) alpha`, clipped to [0, 1], with
    `alpha = min(||d1|| / (||d1|| + ||d2||), alpha_max)`: overshooting by
    `eta` crosses the boundary, `alpha` keeps the point near `x`. When the
    point is misclassified it is recorded if it is the closest so far, and
    moved back towards `x` by `beta`.

    FAB-T (`target_classes=k`, AutoAttack's version) runs once per target:
    the classes with the 2nd, 3rd, ... largest clean logits, k of them
    (9 in AutoAttack's standard version), each on the hyperplane
    `z_t = z_y`; a point counts as adversarial when it is misclassified,
    whatever the class. Restarts after the first start from a random point
    at distance `eps / 2`.

    FAB minimises the norm; `eps` is the threat model's radius. Called as an
    attack, FAB returns the smallest adversarial perturbation it found if it
    lies within `eps`, and the clean point otherwise, as the reference
    code's `perturb` counts a point as broken (AutoAttack, Croce & Hein,
    arXiv 2003.01690). `minimal` returns the smallest perturbation found,
    whatever its size.

    Distance: Linf, L2 or L1, in [0, 1] pixel units; results lie in the eps-ball
    and in [0, 1]. A pure function of `(model, x, y, seeds)` (seeds are used
    only by restarts) that compiles under XLA; each example's result depends
    only on its own input and seed. The untargeted version takes one
    gradient per class and iteration; FAB-T one per target and iteration.

    Args:
        eps: float > 0, the threat model's radius (and the restarts' start).
        norm: "linf", "l2" or "l1".
        steps: iterations per run (AutoAttack: 100).
        restarts: runs per target (or of the untargeted attack); the first
            starts at `x`, the others at random (AutoAttack: 1 for FAB-T, 5
            for FAB in the "plus" version).
        target_classes: None for the untargeted FAB; an int k for FAB-T
            over the k likeliest wrong classes (AutoAttack: 9), at most
            num_classes - 1.
        alpha_max: the largest bias towards `x` (reference: 0.1).
        eta: the overshoot (reference: 1.05).
        beta: the backward step towards `x` after a success (reference: 0.9).
        bn: "inference" or "batch_stats"; see `PGD`. Never updates BatchNorm.
        name: for reports; "fab" or "fab-t" by default.

    Call arguments:
        model: a classifier that returns logits.
        x: float32 `[B, H, W, C]` in [0, 1].
        y: int `[B]`, true labels.
        seeds: int32 `[B, 2]` per-element seeds, or None.

    Returns:
        float32 `[B, H, W, C]`: for each example, the smallest misclassified
        point found if it lies within `eps` of `x`, otherwise `x`.

    Example:
    >>> attack = FAB(eps=8 / 255, target_classes=9)
    >>> x_adv = attack(model, x, y, seeds)
    >>> x_min, distance = attack.minimal(model, x, y, seeds)
    """

    eps: float
    norm: str = "linf"
    steps: int = 100
    restarts: int = 1
    target_classes: Optional[int] = None
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    bn: str = "inference"
    name: Optional[str] = None

    # FAB-T picks its targets itself; as an attack it is untargeted.
    targeted = False

    def __post_init__(self):
        base.check_eps(self)
        if self.norm not in _PROJECTIONS:
            raise ValueError(f"norm must be one of {tuple(_PROJECTIONS)}. Received: norm={self.norm!r}")
        base.check_counts(self, ("steps", "restarts"))
        tc = self.target_classes
        if tc is not None and (isinstance(tc, bool) or not isinstance(tc, (int, np.integer)) or tc < 1):
            raise ValueError(f"target_classes must be None or an int >= 1. Received: target_classes={tc!r}")
        alpha_max = base.number("alpha_max", self.alpha_max)
        if not 0.0 <= alpha_max <= 1.0:
            raise ValueError(f"alpha_max must lie in [0, 1]. Received: alpha_max={self.alpha_max}")
        object.__setattr__(self, "alpha_max", alpha_max)
        eta = base.number("eta", self.eta)
        if not eta >= 1.0:
            raise ValueError(f"eta must be >= 1. Received: eta={self.eta}")
        object.__setattr__(self, "eta", eta)
        beta = base.number("beta", self.beta)
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta must lie in (0, 1]. Received: beta={self.beta}")
        object.__setattr__(self, "beta", beta)
        if self.bn not in ("inference", "batch_stats"):
            raise ValueError(f"bn must be 'inference' or 'batch_stats'. Received: bn={self.bn!r}")
        if self.name is None:
            object.__setattr__(self, "name", "fab" if tc is None else "fab-t")

    def __call__(self, model, x, y, seeds=None):
        return self.call_runs(model, x, y, seeds)

    def run_keys(self, num_classes):
        """`(target rank, restart)` of each run, in order (see `base.Run`)."""
        targets = [0] if self.target_classes is None else range(1, min(self.target_classes, num_classes - 1) + 1)
        return [(t, r) for t in targets for r in range(self.restarts)]

    def call_runs(self, model, x, y, seeds=None, only=None):
        """The attack, or with `only=(target rank, restart)` that run alone.

        `only` may hold int32 scalar tensors, so that one traced function
        makes any of the runs.
        """
        x, y, seeds = base.prepare(x, y, seeds)
        x_min, distance = self._search(model, x, y, seeds, only)
        within = distance <= self.eps
        return tf.stop_gradient(tf.where(within[:, None, None, None], x_min, x))

    def minimal(self, model, x, y, seeds=None):
        """The smallest adversarial perturbation found, whatever its norm.

        Args:
            model, x, y, seeds: as for the call.

        Returns:
            `(x_min, distance)`: float32 `[B, H, W, C]`, the closest
            misclassified point found (`x` where none was found), and float32
            `[B]`, its distance to `x` in the norm (0 for points misclassified
            already, inf where none was found).
        """
        x, y, seeds = base.prepare(x, y, seeds)
        x_min, distance = self._search(model, x, y, seeds)
        return tf.stop_gradient(x_min), distance

    def _search(self, model, x, y, seeds, only=None):
        forward = base.forward_fn(model, self.bn)
        y = tf.cast(y, tf.int32)
        clean_logits = tf.cast(forward(x), tf.float32)
        num_classes = int(clean_logits.shape[-1])
        wrong = tf.not_equal(tf.argmax(clean_logits, -1, output_type=tf.int32), y)
        # A point misclassified already is its own minimal adversarial example.
        best = (x, tf.where(wrong, 0.0, np.inf))
        ranking = None
        if self.target_classes is not None:
            ranking = tf.argsort(clean_logits, axis=-1, direction="DESCENDING", stable=True)
        for rank, restart in self.run_keys(num_classes) if only is None else [(only[0], only[1])]:
            targets = None if ranking is None else tf.gather(ranking, rank, axis=1)
            # The first restart starts at x, the others at random points.
            if isinstance(restart, int) and restart == 0:
                start = x
            else:
                start = self._random_start(x, seeds_lib.derive(seeds, 7000 + 100 * rank + restart))
                if not isinstance(restart, int):
                    start = tf.where(restart > 0, start, x)
            candidate = self._single_run(forward, x, y, targets, start, num_classes)
            closer = candidate[1] < best[1]
            best = (tf.where(closer[:, None, None, None], candidate[0], best[0]), tf.minimum(candidate[1], best[1]))
        return best

    def _random_start(self, x, seeds):
        # The reference starts restarts at x + (eps / 2) t / ||t||: t uniform
        # in [-1, 1] under Linf, Gaussian under L2 and L1.
        if self.norm == "linf":
            t = seeds_lib.uniform(seeds, x.shape[1:], -1.0, 1.0)
            scale = tf.reduce_max(tf.abs(t), axis=[1, 2, 3], keepdims=True)
        elif self.norm == "l1":
            t = seeds_lib.normal(seeds, x.shape[1:])
            scale = tf.reduce_sum(tf.abs(t), axis=[1, 2, 3], keepdims=True)
        else:
            t = seeds_lib.normal(seeds, x.shape[1:])
            scale = tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True))
        return tf.clip_by_value(x + 0.5 * self.eps * t / (scale + 1e-12), 0.0, 1.0)

    def _boundary(self, forward, x1, y, targets, num_classes):
        """The linearised decision boundary at `x1`: `(f, grad f)` with `f < 0` while correct.

        FAB-T: `f = z_t - z_y`. FAB: among `z_j - z_y`, `j != y`, the one
        whose linearised boundary is nearest, `|f_j| / ||grad f_j||_*`.
        """
        if targets is not None:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x1)
                logits = tf.cast(forward(x1), tf.float32)
                f = tf.gather(logits, targets, batch_dims=1) - tf.gather(logits, y, batch_dims=1)
                total = tf.reduce_sum(f)
            grad = tape.gradient(total, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return f, grad
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(x1)
            logits = tf.cast(forward(x1), tf.float32)
            diffs = logits - tf.gather(logits, y, batch_dims=1)[:, None]
            columns = [tf.reduce_sum(diffs[:, j]) for j in range(num_classes)]
        grads = tf.stack(
            [tape.gradient(col, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO) for col in columns], 1
        )  # [B, K, H, W, C]
        del tape
        flat = tf.reshape(grads, [tf.shape(x1)[0], num_classes, -1])
        is_true = tf.one_hot(y, num_classes, on_value=True, off_value=False)
        distance = tf.where(is_true, np.inf, tf.abs(diffs) / (1e-12 + _dual_norm(flat, self.norm)))
        nearest = tf.argmin(distance, -1, output_type=tf.int32)
        return tf.gather(diffs, nearest, batch_dims=1), tf.gather(grads, nearest, batch_dims=1)

    def _single_run(self, forward, x, y, targets, start, num_classes):
        project = _PROJECTIONS[self.norm]
        batch = tf.shape(x)[0]
        x_flat = tf.reshape(x, [batch, -1])

        def body(i, x1, best, best_distance):
            f, grad = self._boundary(forward, x1, y, targets, num_classes)
            w = tf.reshape(grad, [batch, -1])
            x1_flat = tf.reshape(x1, [batch, -1])
            b = tf.reduce_sum(w * x1_flat, 1) - f  # the hyperplane <w, z> = b where the linearisation is 0
            moves = project(tf.concat([x1_flat, x_flat], 0), tf.concat([w, w], 0), tf.concat([b, b], 0))
            d1, d2 = moves[:batch], moves[batch:]
            a1 = tf.maximum(_norm(d1, self.norm), _MIN_STEP)
            a2 = tf.maximum(_norm(d2, self.norm), _MIN_STEP)
            alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, self.alpha_max)[:, None]
            x1_flat = tf.clip_by_value(
                (x1_flat + self.eta * d1) * (1.0 - alpha) + (x_flat + self.eta * d2) * alpha, 0.0, 1.0
            )
            x1 = tf.reshape(x1_flat, tf.shape(x))
            adversarial = tf.not_equal(tf.argmax(forward(x1), -1, output_type=tf.int32), y)
            distance = projections.distance(x1, x, self.norm)
            closer = tf.logical_and(adversarial, distance < best_distance)
            best = tf.where(closer[:, None, None, None], x1, best)
            best_distance = tf.where(closer, distance, best_distance)
            # After a success, step back towards x to search closer to it.
            x1 = tf.where(adversarial[:, None, None, None], x + (x1 - x) * self.beta, x1)
            return i + 1, x1, best, best_distance

        _, _, best, best_distance = tf.while_loop(
            lambda i, *_: i < self.steps,
            body,
            (tf.constant(0), start, x, tf.fill([batch], tf.constant(np.inf, tf.float32))),
        )
        return best, best_distance


__all__ = ["FAB", "project_l1", "project_l2", "project_linf"]
