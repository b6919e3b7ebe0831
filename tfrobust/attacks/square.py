"""The Square attack: score-based black-box random search, the ensemble's guard against masking."""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from tfrobust.attacks import base
from tfrobust.attacks import losses as losses_lib
from tfrobust.attacks import projections
from tfrobust import seeds as seeds_lib

_LOSSES = ("margin", "ce")
# Iteration milestones (out of 10,000) at which the square's share of the
# image halves, from the reference implementation's `p_selection`.
_MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(iteration, queries, p_init, rescale=True):
    """The share of pixels the square covers at an iteration (Andriushchenko et al., sec. 3.1).

    Args:
        iteration: int, the 0-based index of the proposal.
        queries: the query budget.
        p_init: the initial share.
        rescale: whether the milestones, set for 10,000 queries, are
            rescaled to the budget (the reference's `resc_schedule`, True by
            default; AutoAttack runs Square with False).

    Returns:
        float.
    """
    it = int(iteration / queries * 10000) if rescale else iteration
    halvings = sum(it > m for m in _MILESTONES)
    return p_init / 2 ** halvings


def _pattern(side, power, norm):
    # The top `side // 2` rows and the other rows each hold concentric rectangles, ring k from the
    # centre adding 1 / (k + 1)^power, each half normalised, the second negated, the whole normalised.
    def rectangles(rows, cols):
        if rows == 0:
            return np.zeros([0, cols])
        # A pixel at Chebyshev distance r from the centre lies in rings r, r+1, ...
        ring = np.maximum(np.abs(np.arange(rows)[:, None] - rows // 2), np.abs(np.arange(cols)[None, :] - cols // 2))
        tail = np.cumsum(1.0 / np.arange(1, max(rows // 2, cols // 2) + 2) ** power)  # sum_{k < n} 1/(k+1)^power
        pattern = tail[-1] - np.concatenate([[0.0], tail])[ring]
        return pattern / norm(pattern)

    pattern = np.concatenate([rectangles(side // 2, side), -rectangles(side - side // 2, side)], 0)
    return pattern / norm(pattern)


def l2_window(side):
    """The L2 update's pattern on a `side x side` window, of unit L2 norm (Andriushchenko et al., sec. 3.2).

    The top `side // 2` rows and the other rows each hold concentric
    rectangles, each ring `k` from the centre adding `1 / (k + 1)^2`, with
    opposite signs, as the reference's `eta`: a pattern whose two halves push
    opposite ways, so that it changes the image's norm little.
    """
    return _pattern(side, 2, lambda p: np.sqrt(np.sum(p ** 2)))


def l1_window(side):
    """The L1 update's pattern on a `side x side` window, of unit L1 norm.

    As `l2_window`, with rings adding `1 / (k + 1)^4`, so that the mass sits
    nearer the centre, and normalised in L1: the reference's `eta` for L1
    (fra31/auto-attack, `square.py`).
    """
    return _pattern(side, 4, lambda p: np.sum(np.abs(p)))


_WINDOWS = {"l2": l2_window, "l1": l1_window}


@dataclasses.dataclass(frozen=True)
class Square(base.AttackMixin):
    """The Square attack under Linf, L2 or L1: random search with square-shaped updates.

    Andriushchenko et al., "Square Attack: a query-efficient black-box
    adversarial attack via random search", arXiv 1912.00049, Algorithm 1 with
    the Linf (Algorithm 2) or L2 (Algorithm 3) proposal distribution. It uses
    only the model's scores, never its gradients, so gradient masking cannot
    stop it; in the AutoAttack ensemble (Croce & Hein, arXiv 2003.01690) it
    is the guard against defences that only obscure gradients.

    Linf: the start is vertical stripes, each column and channel at
    `x +/- eps`. Each iteration proposes, per example, a square of side
    `s = round(sqrt(p * H * W))` at a random position, sets it to `x +/- eps`
    with a random sign per channel, and keeps the proposal if it lowers the
    loss.

    L2: the start is a grid of windows of side `H // 5`, each holding the
    pattern of `l2_window` (transposed at random) with a random sign per
    channel, scaled to norm `eps`. Each iteration takes two random windows of
    odd side `s >= 3`: the perturbation's mass in both moves into the first,
    where `l2_window`'s pattern with random signs per channel is added to its
    normalised content, the second is cleared, and the whole perturbation is
    rescaled to norm `eps`. A proposal is kept if it lowers the loss or
    misclassifies.

    L1, as AutoAttack's L1 version (the reference code; no paper gives it):
    as L2 with `l1_window`'s pattern and L1 norms, except that the start's
    grid (each window of L1 norm 1 per channel) and every proposal are
    projected onto the intersection of the L1 ball of radius eps (less
    1e-6 of it) and the box (`projections.l1_project`) instead of rescaled;
    the window's new content carries the mass of both windows per channel
    plus the budget the image leaves unused, all times the number of
    channels, as in the reference.

    `p` starts at `p_init` and halves at the reference's milestones (10, 50,
    200, 500, 1000, 2000, 4000, 6000, 8000), rescaled to the budget unless
    `rescale_schedule=False` (AutoAttack). Examples stop changing once
    misclassified, and, as in the reference, are no longer forwarded (except
    under XLA or with `bn="batch_stats"`, where the whole batch is).

    Departures from the reference code, for per-element determinism: the
    squares' positions, signs and the L2 pattern's transposition are drawn
    per example from its own seed (the reference shares them across the
    batch, and under L1 the start's transpositions too), and a proposal identical to the current point is not redrawn (it
    costs one query).

    Distance: Linf, L2 or L1, in [0, 1] pixel units; results lie in the eps-ball
    and in [0, 1]. A pure function of `(model, x, y, seeds)`; compiles under
    XLA.

    Args:
        eps: float > 0.
        norm: "linf", "l2" or "l1" (L2 and L1 need images of at least 5 x 5
            pixels).
        queries: the query budget per restart, the start included (AutoAttack: 5000).
        p_init: initial share of the image a square covers (AutoAttack: 0.8).
        loss: "margin" (`z_y - max_{j != y} z_j`, minimised, as AutoAttack)
            or "ce" (cross-entropy, maximised).
        restarts: independent runs; an example fooled by any is fooled.
        rescale_schedule: rescale the milestones of `p` to `queries` (the
            reference's default); AutoAttack turns it off.
        bn: "inference" or "batch_stats"; see `PGD`. Never updates BatchNorm.
        name: for reports.

    Call arguments:
        model: a classifier that returns logits.
        x: float32 `[B, H, W, C]` in [0, 1].
        y: int `[B]`, true labels.
        seeds: int32 `[B, 2]` per-element seeds, or None.

    Returns:
        float32 `[B, H, W, C]`: the first misclassified point found, or the
        point with the lowest loss.

    Example:
    >>> attack = Square(eps=0.5, norm="l2", queries=5000, rescale_schedule=False)
    >>> x_adv = attack(model, x, y, seeds)
    """

    eps: float
    norm: str = "linf"
    queries: int = 5000
    p_init: float = 0.8
    loss: str = "margin"
    restarts: int = 1
    rescale_schedule: bool = True
    bn: str = "inference"
    name: str = "square"

    targeted = False

    def __post_init__(self):
        base.check_eps(self)
        if self.norm not in projections.NORMS:
            raise ValueError(f"norm must be one of {projections.NORMS}. Received: norm={self.norm!r}")
        base.check_counts(self, ("queries", "restarts"))
        p_init = base.number("p_init", self.p_init)
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must lie in (0, 1]. Received: p_init={self.p_init}")
        object.__setattr__(self, "p_init", p_init)
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}. Received: loss={self.loss!r}")
        if not isinstance(self.rescale_schedule, bool):
            raise ValueError(f"rescale_schedule must be a bool. Received: rescale_schedule={self.rescale_schedule!r}")
        if self.bn not in ("inference", "batch_stats"):
            raise ValueError(f"bn must be 'inference' or 'batch_stats'. Received: bn={self.bn!r}")

    def __call__(self, model, x, y, seeds=None):
        return self.call_runs(model, x, y, seeds)

    def run_keys(self, num_classes):
        """`(0, restart)` of each run, in order (see `base.Run`)."""
        del num_classes
        return [(0, r) for r in range(self.restarts)]

    def call_runs(self, model, x, y, seeds=None, only=None):
        """The attack, or with `only=(0, restart)` that run alone.

        `only` may hold int32 scalar tensors, so that one traced function
        makes any of the runs.
        """
        x, y, seeds = base.prepare(x, y, seeds)
        if self.norm != "linf" and min(int(x.shape[1]), int(x.shape[2])) < 5:
            raise ValueError(f"The {self.norm.upper()} Square attack needs images of at least 5 x 5 pixels. "
                             f"Received: x.shape={x.shape}")
        forward = base.forward_fn(model, self.bn)
        batch = tf.shape(x)[0]
        best = (x, tf.zeros([batch], tf.bool), tf.fill([batch], np.inf))
        for restart in range(self.restarts) if only is None else [only[1]]:
            run = self._single_run(forward, x, y, seeds_lib.derive(seeds, 5000 + restart))
            best = _keep_better(best, run)
        return tf.stop_gradient(best[0])

    def _scores(self, forward, x_adv, y):
        logits = tf.cast(forward(x_adv), tf.float32)
        margin = -losses_lib.margin(logits, y)  # > 0 while correctly classified
        if self.loss == "margin":
            return margin, margin
        return margin, -losses_lib.cross_entropy(logits, y)

    def _sides(self, height, width):
        # The side of the square of each proposal, computed in Python: the
        # schedule is static. Proposal i (0-based) is query i + 1.
        sides = []
        for i in range(self.queries - 1):
            side = int(round(np.sqrt(p_schedule(i, self.queries, self.p_init, self.rescale_schedule) * height * width)))
            if self.norm == "linf":
                side = min(max(side, 1), min(height, width) - 1 if min(height, width) > 1 else 1)
            else:
                side = max(side, 3)
                side = min(side + 1 if side % 2 == 0 else side, min(height, width))
            sides.append(side)
        return sides

    def _single_run(self, forward, x, y, seeds):
        height, width = int(x.shape[1]), int(x.shape[2])
        sides = self._sides(height, width)
        if self.norm == "linf":
            x_best = self._linf_start(x, seeds)
            propose = self._linf_proposal
        else:
            x_best = self._grid_start(x, seeds)
            propose = functools.partial(self._window_proposal,
                                        table=_WindowTable(sorted(set(sides)) or [3], _WINDOWS[self.norm]))
        margin, loss = self._scores(forward, x_best, y)
        sides = tf.constant(sides + [1], tf.int32)  # padded: a budget of 1 query has no proposal
        # As the reference, each query forwards only the points not yet misclassified: where Square matters
        # (masked gradients) it breaks most of them early. Not under XLA (no dynamic shapes), nor with batch
        # statistics, which would then depend on which points are left.
        compact = self.bn == "inference" and not base.in_xla()

        def body(i, x_best, margin, loss):
            proposal = propose(x, x_best, tf.gather(sides, i - 1), seeds_lib.derive(seeds, i))
            active = margin > 0.0
            if compact:
                idx = tf.where(active)
                some_margin, some_loss = self._scores(forward, tf.gather_nd(proposal, idx), tf.gather_nd(y, idx))
                new_margin = tf.tensor_scatter_nd_update(margin, idx, some_margin)
                new_loss = tf.tensor_scatter_nd_update(loss, idx, some_loss)
            else:
                new_margin, new_loss = self._scores(forward, proposal, y)
            # As the reference: the loss is kept if lower; the point if the
            # loss is lower or the proposal misclassifies.
            lower = tf.logical_and(active, new_loss < loss)
            accept = tf.logical_or(lower, tf.logical_and(active, new_margin <= 0.0))
            return (
                i + 1,
                tf.where(accept[:, None, None, None], proposal, x_best),
                tf.where(accept, new_margin, margin),
                tf.where(lower, new_loss, loss),
            )

        _, x_best, margin, loss = tf.while_loop(
            # Once no point is left to attack, the remaining queries would change nothing.
            lambda i, x_best, margin, loss: tf.logical_and(i < self.queries, tf.reduce_any(margin > 0.0)),
            body, (tf.constant(1), x_best, margin, loss)
        )
        return x_best, margin <= 0.0, loss

    def _linf_start(self, x, seeds):
        width, channels = int(x.shape[2]), int(x.shape[3])
        stripes = tf.sign(seeds_lib.uniform(seeds, (1, width, channels), -1.0, 1.0))
        stripes = tf.where(tf.equal(stripes, 0.0), 1.0, stripes)
        return tf.clip_by_value(x + self.eps * stripes, 0.0, 1.0)

    def _linf_proposal(self, x, x_best, s, seeds):
        height, width, channels = (int(d) for d in x.shape[1:])
        u = seeds_lib.uniform(seeds, (2 + channels,))
        window = _window(height, width, u[:, 0], u[:, 1], s)
        signs = tf.where(u[:, 2:] < 0.5, -1.0, 1.0)[:, None, None, :]
        return tf.where(window, tf.clip_by_value(x + self.eps * signs, 0.0, 1.0), x_best)

    def _grid_start(self, x, seeds):
        # The reference's grid: windows of side s = H // 5 from offset
        # (H - 5 s) // 2 on both axes, H // s by W // s of them, each with
        # the norm's window pattern (transposed at random) and a random sign per channel.
        height, width, channels = (int(d) for d in x.shape[1:])
        side = height // 5
        offset = (height - 5 * side) // 2
        grid_rows, grid_cols = height // side, width // side
        u = seeds_lib.uniform(seeds, (grid_rows, grid_cols, 1 + channels))
        rows, cols = np.arange(height) - offset, np.arange(width) - offset
        block_r, block_c = rows // side, cols // side
        inside = ((rows >= 0) & (block_r < grid_rows))[:, None] & ((cols >= 0) & (block_c < grid_cols))[None, :]
        pattern = _WINDOWS[self.norm](side)
        local_r, local_c = rows[:, None] % side, cols[None, :] % side
        plain = np.where(inside, pattern[local_r, local_c], 0.0).astype("float32")
        flipped = np.where(inside, pattern.T[local_r, local_c], 0.0).astype("float32")
        index = np.stack(np.broadcast_arrays(np.clip(block_r, 0, grid_rows - 1)[:, None],
                                             np.clip(block_c, 0, grid_cols - 1)[None, :]), -1)
        draws = tf.gather_nd(tf.transpose(u, [1, 2, 3, 0]), index)  # [H, W, 1 + C, B]
        draws = tf.transpose(draws, [3, 0, 1, 2])
        transpose = draws[..., :1] > 0.5
        signs = tf.where(draws[..., 1:] < 0.5, -1.0, 1.0)
        delta = tf.where(transpose, flipped[None, :, :, None], plain[None, :, :, None]) * signs
        if self.norm == "l1":
            return projections.l1_project(x + delta, x, self.eps * (1.0 - 1e-6))
        return tf.clip_by_value(x + self.eps * _unit(delta), 0.0, 1.0)

    def _window_proposal(self, x, x_best, s, seeds, table):
        height, width, channels = (int(d) for d in x.shape[1:])
        eps = self.eps
        l1 = self.norm == "l1"
        u = seeds_lib.uniform(seeds, (5 + channels,))
        first = _window(height, width, u[:, 0], u[:, 1], s)
        second = _window(height, width, u[:, 2], u[:, 3], s)
        delta = x_best - x

        def norm(v, axis):
            if l1:
                return tf.reduce_sum(tf.abs(v), axis=axis, keepdims=True)
            return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axis, keepdims=True))

        in_first = tf.where(first, delta, 0.0)
        # Per example and channel, [B, 1, 1, C]; the image's, [B, 1, 1, 1].
        norm_first = norm(in_first, [1, 2])
        norm_both = norm(tf.where(tf.logical_or(first, second), delta, 0.0), [1, 2])
        norm_image = norm(delta, [1, 2, 3])
        signs = tf.where(u[:, 5:] < 0.5, -1.0, 1.0)[:, None, None, :]
        pattern = table.place(height, width, u[:, 0], u[:, 1], s, u[:, 4] > 0.5)  # [B, H, W, 1]
        update = pattern * signs + in_first / (1e-12 + norm_first)
        # The mass of both windows, plus the budget the image leaves unused,
        # shared among the channels (under L1 the reference then multiplies
        # by the channels; the projection below keeps the budget).
        if l1:
            scale = (tf.maximum(eps - norm_image, 0.0) / channels + norm_both) * channels
        else:
            scale = tf.sqrt(tf.maximum(eps ** 2 - tf.square(norm_image), 0.0) / channels + tf.square(norm_both))
        update = tf.where(first, update, 0.0)
        update = update / (1e-12 + norm(update, [1, 2])) * scale
        delta = tf.where(first, update, tf.where(second, 0.0, delta))
        if l1:
            return projections.l1_project(x + delta, x, eps * (1.0 - 1e-6))
        return tf.clip_by_value(x + eps * _unit(delta), 0.0, 1.0)


def _unit(delta):
    # Per example, scaled to unit L2 norm (the reference's `normalize`).
    return delta / (tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True)) + 1e-12)


def _corner(extent, u, s):
    # The reference's random_int(0, extent - s): never the last position.
    return tf.cast(u * tf.cast(extent - s, tf.float32), tf.int32)


def _window(height, width, u_top, u_left, s):
    """A bool `[B, H, W, 1]` mask of an `s x s` window per example at a random position."""
    top, left = _corner(height, u_top, s), _corner(width, u_left, s)
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]
    return tf.logical_and(
        tf.logical_and(rows >= top[:, None, None, None], rows < (top + s)[:, None, None, None]),
        tf.logical_and(cols >= left[:, None, None, None], cols < (left + s)[:, None, None, None]),
    )


class _WindowTable:
    """A window pattern (`l2_window` or `l1_window`) for each side a run uses, to place on the image."""

    def __init__(self, sides, pattern):
        self.sides = sides
        largest = max(sides)
        table = np.zeros([len(sides), largest, largest], np.float32)
        for i, side in enumerate(sides):
            table[i, :side, :side] = pattern(side)
        self.table = tf.constant(table)
        self.lookup = np.zeros(largest + 1, np.int32)
        self.lookup[sides] = np.arange(len(sides))

    def place(self, height, width, u_top, u_left, s, transpose):
        """The pattern of side `s` at the window `_window` draws from the same numbers, `[B, H, W, 1]`."""
        top, left = _corner(height, u_top, s), _corner(width, u_left, s)
        local_r = tf.range(height)[None, :, None] - top[:, None, None]
        local_c = tf.range(width)[None, None, :] - left[:, None, None]
        inside = (local_r >= 0) & (local_r < s) & (local_c >= 0) & (local_c < s)
        local_r = tf.clip_by_value(local_r, 0, s - 1)
        local_c = tf.clip_by_value(local_c, 0, s - 1)
        t = transpose[:, None, None]
        r, c = tf.where(t, local_c, local_r), tf.where(t, local_r, local_c)
        which = tf.fill(tf.shape(r), tf.gather(tf.constant(self.lookup), s))
        values = tf.gather_nd(self.table, tf.stack([which, r, c], -1))
        return tf.where(inside, values, 0.0)[..., None]


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
