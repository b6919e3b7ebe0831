"""stAdv: spatially transformed adversarial examples, with a bounded flow field."""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from tfrobust.attacks import base
from tfrobust.attacks import losses as losses_lib
from tfrobust import seeds as seeds_lib

_LOSSES = ("margin", "ce")
_INITS = ("none", "uniform")
_SELECT = ("best", "last")
_BN_MODES = ("inference", "batch_stats")
# Keeps the random start of stAdv apart from other attacks' starts, which use
# the element's attack seed directly.
_START_SALT = 21

# Added under the square root of L_flow: without it the gradient of
# sqrt(||d||^2) is 0/0 wherever neighbouring flows are equal, e.g. at the
# zero-flow start.
_FLOW_LOSS_DELTA = 1e-8


def warp(x, flow):
    """Resamples images along a per-pixel flow field, bilinearly.

    The flow is backward, as in Xiao et al. (eq. 1): output pixel `(r, c)`
    takes the value of `x` at `(r + flow[..., 0], c + flow[..., 1])`, so a
    constant flow of `(0, +1)` moves the image one pixel to the *left*. Both
    components are in pixels: `flow[..., 0]` is the row (vertical)
    displacement, `flow[..., 1]` the column (horizontal) one.

    Edges are replicated: sampling positions are clamped to the image, so a
    pixel that flows off the image takes the value of the nearest edge pixel.
    Replication keeps images in [0, 1] without inventing a black border (which
    zero padding would, visibly, on CIFAR-type images); on MNIST's black
    borders the two agree.

    A gather-based sampler (four gathers of `[B, H, W]` positions) rather
    than `keras.ops.image.map_coordinates(order=1, fill_mode="nearest")`,
    which gives the same values but, on batched images, interpolates along
    all four axes (16 gathers). Both have gradients w.r.t. the flow and
    compile under XLA. A zero flow reproduces `x` bit for bit, and so does an
    integer flow on the pixels it does not push off the image.

    Args:
        x: float `[B, H, W, C]` images.
        flow: float `[B, H, W, 2]`, displacements in pixels.

    Returns:
        float32 `[B, H, W, C]`: convex combinations of the pixels of `x`, so
        in [0, 1] when `x` is (up to rounding).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    flow = tf.convert_to_tensor(flow, tf.float32)
    if x.shape.rank != 4 or flow.shape.rank != 4:
        raise ValueError(
            f"warp expects x [B, H, W, C] and flow [B, H, W, 2]. "
            f"Received: x.shape={x.shape}, flow.shape={flow.shape}"
        )
    if flow.shape[-1] is not None and flow.shape[-1] != 2:
        raise ValueError(f"flow must have 2 channels (rows, columns). Received: flow.shape={flow.shape}")
    shape = tf.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]

    def axis_nodes(position, size):
        # The lower node never passes the last pixel; at the last pixel both
        # nodes coincide with weight 0 on the upper one, so edge pixels are
        # reproduced exactly (the lerp `a + 1 * (b - a)` would not be).
        top = tf.cast(size - 1, tf.float32)
        position = tf.clip_by_value(position, 0.0, top)
        lower = tf.floor(position)
        lower_index = tf.cast(lower, tf.int32)
        upper_index = tf.minimum(lower_index + 1, size - 1)
        return lower_index, upper_index, position - lower

    rows = tf.range(height, dtype=tf.float32)[None, :, None] + flow[..., 0]
    cols = tf.range(width, dtype=tf.float32)[None, None, :] + flow[..., 1]
    r0, r1, wr = axis_nodes(rows, height)
    c0, c1, wc = axis_nodes(cols, width)

    pixels = tf.reshape(x, [-1, channels])
    offsets = (tf.range(batch) * height)[:, None, None]

    def at(r, c):
        return tf.gather(pixels, (offsets + r) * width + c)

    wr, wc = wr[..., None], wc[..., None]
    v00, v01, v10, v11 = at(r0, c0), at(r0, c1), at(r1, c0), at(r1, c1)
    top = v00 + wc * (v01 - v00)
    bottom = v10 + wc * (v11 - v10)
    return top + wr * (bottom - top)


def flow_loss(flow, delta=_FLOW_LOSS_DELTA):
    """The flow-smoothness loss L_flow of Xiao et al. (eq. 4), per example.

    `sum_p sum_{q in N(p)} sqrt(||du_p - du_q||^2 + ||dv_p - dv_q||^2 + delta)`
    over pixels `p` and their 4-neighbours `q` inside the image: every
    adjacent pair counts twice, as in the paper's double sum. `delta`
    (1e-8) keeps the gradient finite where neighbouring flows agree.

    Args:
        flow: float `[B, H, W, 2]`.
        delta: small float added under the square root.

    Returns:
        float32 `[B]`.
    """
    flow = tf.convert_to_tensor(flow, tf.float32)

    def pairs(diff):
        return tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(diff), -1) + delta), axis=[1, 2])

    vertical = pairs(flow[:, 1:] - flow[:, :-1])
    horizontal = pairs(flow[:, :, 1:] - flow[:, :, :-1])
    return 2.0 * (vertical + horizontal)


def _pixel_norm(flow):
    # The length of each pixel's displacement vector, [B, H, W, 1].
    return tf.sqrt(tf.reduce_sum(tf.square(flow), -1, keepdims=True))


def project_flow(flow, eps):
    """Scales every pixel's displacement `(dr, dc)` down to length <= eps (pixels)."""
    norm = _pixel_norm(flow)
    # eps / max(norm, eps) is exactly 1 inside the disc and never divides by 0.
    return flow * (eps / tf.maximum(norm, eps))


@dataclasses.dataclass(frozen=True)
class StAdv(base.AttackMixin):
    """stAdv: spatially transformed adversarial examples, bounded per pixel.

    Xiao et al., "Spatially transformed adversarial examples",
    arXiv 1801.02612. Instead of adding noise, the attack moves pixels: it
    optimises a flow field `f` (a displacement per pixel) and returns
    `warp(x, f)`, the image resampled bilinearly along it (see `warp`). The
    paper minimises `L_adv(x, f) + tau * L_flow(f)` (eq. 2), with the CW
    margin as `L_adv` and the smoothness loss `L_flow` of eq. 4 (see
    `flow_loss`), using L-BFGS and no bound on the flow. As used for Table 2
    of Prabhu et al., "Understanding adversarial robustness through loss
    landscape geometries", arXiv 1907.09061, it is a threat model with a
    budget; here that budget is `eps`.

    Distance (`norm = "flow"`): the largest displacement of any pixel,
    `max_p sqrt(dr_p^2 + dc_p^2)`, in **pixels** of the input image (the
    unit of Xiao et al.'s flow). It is not a pixel-value distance, so reports
    never group stAdv with Linf/L2 attacks. A bound of `eps` pixels changes a
    pixel's value by at most about `eps` times the local image gradient.

    Optimiser. L-BFGS has a data-dependent number of function evaluations
    and line searches, which neither compiles into one static XLA graph nor
    keeps a per-element result independent of its batch. Instead the attack
    runs a fixed number of projected steepest-ascent steps on
    `J(f) = L_adv(x, f) - tau * L_flow(f)`: each pixel's displacement moves
    `step_size` pixels along its own normalised gradient `g_p / ||g_p||`,
    then is scaled back into the disc of radius `eps`. That is the
    steepest-ascent direction for this threat model (a max over pixels of
    per-pixel lengths), as the sign step is for Linf PGD; unlike Adam it
    carries no state between steps, and its step length does not depend on
    the scale of the logits. On MNIST it was stronger than steps normalised
    per example (which move weak-gradient pixels less). The start is the
    zero flow (the clean image) or a uniform random flow in the bound.

    tau and the bound. `tau = 0.05` is Xiao et al.'s value. Under a bound the
    smoothness term costs strength: with it, many pixels prefer following
    their neighbours to fooling the model. `tau=0` gives the strongest
    attack under the bound; `tau > 0` gives smoother, less visible flows
    (lower 1-SSIM; see `tfrobust.evaluation.ssim`).

    Default bound. `eps` defaults to 0.3/64 pixels, the budget quoted to us
    for Prabhu et al.; their paper text was not available to confirm its
    unit. Read as pixels it is a very small attack (pixel values move by
    at most ~0.007, 1-SSIM ~ 0 on MNIST); pass a bound of 0.5 to 2 pixels
    for a strong one.

    The attack is a pure function of `(model, x, y, seeds)`: the step count
    is static, randomness (only with `init="uniform"`) comes from the
    per-element `seeds`, and every term of the objective is per example, so
    an element's result does not depend on its batch. It compiles under XLA.

    Args:
        eps: float > 0, the flow bound in pixels. Default 0.3/64.
        norm: must be "flow" (kept so reports can group by `(norm, eps)`).
        tau: float >= 0, weight of the smoothness loss L_flow. Default 0.05.
        steps: int >= 1. Default 20.
        step_size: float > 0, pixels per step. Default `2.5 * eps / steps`
            (Madry et al.'s rule for PGD).
        loss: "margin" (CW, `max_{j != y} z_j - z_y`, as in Xiao et al.,
            but not clamped at a confidence kappa: the bound, not the
            smoothness term, defines the threat model) or "ce".
            Default "margin".
        init: "none" (zero flow: the clean image) or "uniform" (uniform in the
            disc of radius eps, from `seeds`). Default "none".
        targeted: if True, `y` holds target classes and the attack descends
            the loss towards them.
        select: "best" keeps, per example, the iterate that fools the model
            (or, failing that, the one with the highest adversarial loss), at
            the cost of one extra forward pass; "last" returns the final one.
        bn: "inference" or "batch_stats"; see `base.forward_fn`. Neither
            updates BatchNorm statistics.
        name: the attack's name in reports.

    Call arguments:
        model: a callable `model(x, training=...) -> logits` (a Keras model).
        x: float32 `[B, H, W, C]` in [0, 1].
        y: int labels `[B]` (targets if `targeted`).
        seeds: int32 `[B, 2]` per-element seeds; only used by
            `init="uniform"`. If None, derived from the position in the batch.
        eps_scale: optional scalar multiplying eps and the step size
            (warm-up during training).

    Returns:
        float32 `[B, H, W, C]` warped images in [0, 1], under
        `tf.stop_gradient`. `attack.flow(...)` returns the flow `[B, H, W, 2]`.

    Example:
    >>> attack = StAdv(eps=1.0, steps=20)
    >>> x_adv = attack(model, x, y, seeds)
    >>> f = attack.flow(model, x, y, seeds)  # max pixel displacement <= 1.0
    """

    eps: float = 0.3 / 64
    norm: str = "flow"
    tau: float = 0.05
    steps: int = 20
    step_size: Optional[float] = None
    loss: str = "margin"
    init: str = "none"
    targeted: bool = False
    select: str = "best"
    bn: str = "inference"
    name: str = "stadv"

    def __post_init__(self):
        eps = base.number("eps", self.eps)
        if not eps > 0 or not np.isfinite(eps):
            raise ValueError(f"eps must be a finite float > 0 (pixels). Received: eps={self.eps}")
        object.__setattr__(self, "eps", eps)
        if self.norm != "flow":
            raise ValueError(
                "StAdv bounds a flow field, so norm must be 'flow'; its eps is the "
                f"largest pixel displacement, in pixels. Received: norm={self.norm!r}"
            )
        tau = base.number("tau", self.tau)
        if not tau >= 0 or not np.isfinite(tau):
            raise ValueError(f"tau must be a finite float >= 0. Received: tau={self.tau}")
        object.__setattr__(self, "tau", tau)
        steps = self.steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be an int >= 1. Received: steps={self.steps!r}")
        object.__setattr__(self, "steps", int(self.steps))
        if self.step_size is None:
            object.__setattr__(self, "step_size", 2.5 * eps / self.steps)
        else:
            step_size = base.number("step_size", self.step_size)
            if not step_size > 0 or not np.isfinite(step_size):
                raise ValueError(
                    f"step_size must be a finite float > 0. Received: step_size={self.step_size}"
                )
            object.__setattr__(self, "step_size", step_size)
        choices = (("loss", _LOSSES), ("init", _INITS), ("select", _SELECT), ("bn", _BN_MODES))
        for arg, allowed in choices:
            if getattr(self, arg) not in allowed:
                raise ValueError(
                    f"{arg} must be one of {allowed}. Received: {arg}={getattr(self, arg)!r}"
                )
        if not isinstance(self.targeted, bool):
            raise TypeError(f"targeted must be a bool. Received: targeted={self.targeted!r}")

    def __call__(self, model, x, y, seeds=None, eps_scale=None):
        x, y, seeds = base.prepare(x, y, seeds, num_classes=base.output_classes(model))
        flow = self._optimise(model, x, y, seeds, eps_scale)
        return tf.stop_gradient(tf.clip_by_value(warp(x, flow), 0.0, 1.0))

    def flow(self, model, x, y, seeds=None, eps_scale=None):
        """Returns the optimised flow `[B, H, W, 2]` (pixels; rows, columns)."""
        x, y, seeds = base.prepare(x, y, seeds, num_classes=base.output_classes(model))
        return tf.stop_gradient(self._optimise(model, x, y, seeds, eps_scale))

    def _optimise(self, model, x, y, seeds, eps_scale):
        eps = tf.constant(self.eps, tf.float32)
        step_size = tf.constant(self.step_size, tf.float32)
        if eps_scale is not None:
            eps_scale = tf.cast(eps_scale, tf.float32)
            eps, step_size = eps * eps_scale, step_size * eps_scale
        loss_fn = losses_lib.get(self.loss)
        forward = base.forward_fn(model, self.bn)
        sign = -1.0 if self.targeted else 1.0
        tau = tf.constant(self.tau, tf.float32)
        flow_shape = tf.concat([tf.shape(x)[:3], [2]], 0)

        def adversarial_loss(logits):
            return sign * loss_fn(logits, y)

        def fooled(logits):
            hit = tf.equal(tf.argmax(logits, -1, output_type=tf.int64), tf.cast(y, tf.int64))
            return hit if self.targeted else tf.logical_not(hit)

        def loss_and_grad(flow):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(flow)
                logits = tf.cast(forward(warp(x, flow)), tf.float32)
                adv = adversarial_loss(logits)
                # Summed per example, so each element's gradient is its own.
                objective = tf.reduce_sum(adv - tau * flow_loss(flow))
            grad = tape.gradient(objective, flow, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return logits, adv, grad

        def keep_better(best, candidate):
            bf, bfool, bloss = best
            cf, cfool, closs = candidate
            better = tf.logical_or(
                tf.logical_and(cfool, tf.logical_not(bfool)),
                tf.logical_and(tf.equal(cfool, bfool), closs > bloss),
            )
            return (
                tf.where(better[:, None, None, None], cf, bf),
                tf.where(better, cfool, bfool),
                tf.where(better, closs, bloss),
            )

        track = self.select == "best"

        def step(flow, best):
            logits, adv, grad = loss_and_grad(flow)
            if track:
                best = keep_better(best, (flow, fooled(logits), adv))
            # Per-pixel normalised gradient: steepest ascent when each pixel's
            # displacement is bounded in length. A pixel with no gradient stays.
            direction = grad / tf.maximum(_pixel_norm(grad), 1e-12)
            return project_flow(flow + step_size * direction, eps), best

        if self.init == "uniform":
            # Uniform in the disc: radius eps * sqrt(u), angle 2 pi v.
            noise = seeds_lib.uniform(
                seeds_lib.derive(seeds, _START_SALT), tuple(x.shape[1:3]) + (2,)
            )
            radius = eps * tf.sqrt(noise[..., :1])
            angle = 2.0 * np.pi * noise[..., 1:]
            flow = tf.concat([radius * tf.sin(angle), radius * tf.cos(angle)], -1)
        else:
            flow = tf.zeros(flow_shape, tf.float32)

        batch = tf.shape(x)[0]
        best = (flow, tf.zeros([batch], tf.bool), tf.fill([batch], -np.inf))
        if self.steps == 1:
            flow, best = step(flow, best)
        else:
            _, flow, best = tf.while_loop(
                lambda i, *_: i < self.steps,
                lambda i, f, b: (i + 1, *step(f, b)),
                (tf.constant(0), flow, best),
            )
        if not track:
            return flow
        logits = tf.cast(forward(warp(x, flow)), tf.float32)
        best = keep_better(best, (flow, fooled(logits), adversarial_loss(logits)))
        return best[0]
