"""Threat models: random initialisers, step rules and projections for Linf and L2, and the L1 projection.

Each piece is a pure function of tensors, in the style of DeepMind's
`adversarial_robustness` code: an attack is composed from them, not subclassed.
`eps` and the step size are scalar tensors so that a warm-up schedule can change
them without retracing.
"""

import dataclasses
import numbers
from typing import Callable

import tensorflow as tf

from tfrobust import seeds as seeds_lib

_TINY = 1e-12


def _per_example_l2(v):
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2, 3], keepdims=True) + _TINY)


def linf_init(x, seeds, eps):
    """Uniform start in the Linf ball, clipped to [0, 1]."""
    noise = seeds_lib.uniform(seeds, x.shape[1:], -1.0, 1.0)
    return tf.clip_by_value(x + eps * noise, 0.0, 1.0)


def l2_init(x, seeds, eps):
    """Uniform start in the L2 ball: a Gaussian direction and radius `eps * u^(1/d)`."""
    direction = seeds_lib.normal(seeds, x.shape[1:])
    direction = direction / _per_example_l2(direction)
    d = float(x.shape[1] * x.shape[2] * x.shape[3])
    u = seeds_lib.uniform(seeds_lib.derive(seeds, 13), ())[:, None, None, None]
    return tf.clip_by_value(x + eps * (u ** (1.0 / d)) * direction, 0.0, 1.0)


def small_gaussian_init(x, seeds, eps):
    """TRADES' start: `x + 0.001 * N(0, 1)`, clipped to [0, 1] (eps unused)."""
    del eps
    return tf.clip_by_value(x + 0.001 * seeds_lib.normal(seeds, x.shape[1:]), 0.0, 1.0)


def no_init(x, seeds, eps):
    """Starts at the clean point."""
    del seeds, eps
    return x


def sign_step(grad, step_size):
    """Steepest ascent for Linf: `step_size * sign(grad)`."""
    return step_size * tf.sign(grad)


def l2_step(grad, step_size):
    """Steepest ascent for L2: `step_size * grad / ||grad||_2` per example."""
    return step_size * grad / _per_example_l2(grad)


# Adam's constants as Gowal et al.'s attack code sets them (DeepMind `adversarial_robustness/jax/attacks.py`):
# Kingma & Ba's betas, and an epsilon small enough that a first step is sign(grad) almost exactly.
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-9


def adam_state(x):
    """Adam's first and second moments for a perturbation of `x`'s shape, at zero."""
    return tf.zeros_like(x), tf.zeros_like(x)


def adam_step(grad, step_size, state, count):
    """One step of Adam (Kingma & Ba, arXiv 1412.6980) on the input, as ascent.

    The update is `step_size * m_hat / (sqrt(v_hat) + 1e-9)`, with
    bias-corrected moments, element by element: about `step_size * sign(grad)`
    on the first step, then larger where the gradient's sign is steady.

    Args:
        grad: the loss gradient with respect to the input.
        step_size: scalar, the learning rate of this step.
        state: `(m, v)` from `adam_state` or the previous step.
        count: the 1-based index of this step (int tensor).

    Returns:
        `(update, new_state)`.
    """
    m, v = state
    m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(grad)
    t = tf.cast(count, tf.float32)
    m_hat = m / (1.0 - tf.pow(ADAM_BETA1, t))
    v_hat = v / (1.0 - tf.pow(ADAM_BETA2, t))
    return step_size * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON), (m, v)


def check_step_schedule(schedule, steps=None):
    """A PGD step schedule as a tuple of `(int boundary >= 1, float scale > 0)` pairs.

    Accepts the lists that JSON gives back. Raises ValueError unless the
    boundaries are ints >= 1 in increasing order (and below `steps`, if
    given: a later one would do nothing) and the scales numbers > 0.
    """
    try:
        pairs = tuple((b, s) for b, s in (schedule or ()))
    except (TypeError, ValueError):
        raise ValueError(f"step_schedule must be (boundary, scale) pairs. Received: step_schedule={schedule!r}")
    checked = []
    for boundary, scale in pairs:
        if isinstance(boundary, bool) or not isinstance(boundary, numbers.Integral) or boundary < 1:
            raise ValueError(f"step_schedule boundaries must be ints >= 1. Received: step_schedule={schedule!r}")
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0:
            raise ValueError(f"step_schedule scales must be numbers > 0. Received: step_schedule={schedule!r}")
        checked.append((int(boundary), float(scale)))
    if any(a[0] >= b[0] for a, b in zip(checked, checked[1:])):
        raise ValueError(f"step_schedule boundaries must increase. Received: step_schedule={schedule!r}")
    if checked and steps is not None and checked[-1][0] >= steps:
        raise ValueError(f"step_schedule boundaries must be below steps ({steps}), or they do nothing. "
                         f"Received: step_schedule={schedule!r}")
    return tuple(checked)


def scheduled(step_size, schedule, index):
    """The step size at 0-based step `index` under a piecewise-constant schedule.

    `schedule` holds `(boundary, scale)` pairs: from step `boundary` on the
    step size is multiplied by `scale`, cumulatively, as in optax's
    `piecewise_constant_schedule` (Gowal et al.'s training attack: 0.1, then
    0.01 from step 5, is `step_size=0.1, schedule=((5, 0.1),)`).
    """
    for boundary, scale in schedule:
        step_size = tf.where(index >= boundary, step_size * scale, step_size)
    return step_size


def linf_project(x_adv, x, eps):
    """Projects onto the Linf ball of radius eps around x, intersected with [0, 1]."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


def l2_project(x_adv, x, eps):
    """Projects onto the L2 ball of radius eps around x, then clips to [0, 1].

    Clipping to the box after the ball keeps the point in the ball, because x
    itself is in the box.
    """
    delta = x_adv - x
    delta = delta * tf.minimum(1.0, eps / _per_example_l2(delta))
    return tf.clip_by_value(x + delta, 0.0, 1.0)


def l1_project(x_adv, x, eps):
    """Projects onto the L1 ball of radius eps around x intersected with [0, 1], exactly.

    The Euclidean projection onto `{x + d : ||d||_1 <= eps, 0 <= x + d <= 1}`
    (Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on
    image classifiers", arXiv 2103.01208, section 3.2): with `c_i` the room
    the box leaves in the direction of `v_i = x_adv_i - x_i`, the result is
    `d_i = sign(v_i) * clip(|v_i| - lam, 0, c_i)`, where `lam >= 0` is 0 if
    that already fits in the ball and otherwise the threshold at which the L1
    norm equals eps. The norm is piecewise linear in `lam`, with a kink at
    each `|v_i|` and `|v_i| - c_i`; `lam` comes from sorting the kinks once,
    per example, so the projection compiles under XLA. Projecting the box
    first and the ball second (or the reverse) does not give this point.

    Args:
        x_adv: float32 `[B, ...]`, the point to project.
        x: float32 `[B, ...]` in [0, 1], the centre.
        eps: the radius, a scalar or `[B]`-broadcastable tensor.

    Returns:
        float32 of `x_adv`'s shape, within the ball (up to float32 rounding,
        which a final rescaling keeps below eps) and in [0, 1].
    """
    shape = tf.shape(x_adv)
    batch = shape[0]
    v = tf.reshape(tf.cast(x_adv, tf.float32) - tf.cast(x, tf.float32), [batch, -1])
    centre = tf.reshape(tf.cast(x, tf.float32), [batch, -1])
    eps = tf.reshape(tf.broadcast_to(tf.cast(eps, tf.float32), [batch]), [batch, 1])
    magnitude = tf.abs(v)
    room = tf.maximum(tf.where(v > 0.0, 1.0 - centre, centre), 0.0)
    capped = tf.minimum(magnitude, room)
    # norm(lam) = sum_k w_k * max(a_k - lam, 0) over the kinks a = |v| (w = +1) and a = |v| - room
    # (w = -1). Between consecutive kinks (sorted descending) it is S_j - W_j * lam, with S and W the
    # running sums of w * a and w; at kink j it equals S_j - W_j * a_j, which grows with j.
    kinks = tf.concat([magnitude, magnitude - room], 1)
    weights = tf.concat([tf.ones_like(magnitude), -tf.ones_like(magnitude)], 1)
    order = tf.argsort(kinks, axis=1, direction="DESCENDING", stable=True)
    kinks = tf.gather(kinks, order, batch_dims=1)
    weights = tf.gather(weights, order, batch_dims=1)
    running_s = tf.cumsum(weights * kinks, axis=1)
    running_w = tf.cumsum(weights, axis=1)
    at_kinks = running_s - running_w * kinks
    # The last kink whose norm is still within eps bounds the segment on which norm(lam) = eps.
    last = tf.reduce_sum(tf.cast(at_kinks <= eps, tf.int32), axis=1, keepdims=True) - 1
    s_j = tf.gather(running_s, last, batch_dims=1)
    w_j = tf.gather(running_w, last, batch_dims=1)
    lam = tf.maximum((s_j - eps) / tf.maximum(w_j, 1.0), 0.0)
    lam = tf.where(tf.reduce_sum(capped, axis=1, keepdims=True) > eps, lam, 0.0)
    d = tf.sign(v) * tf.clip_by_value(magnitude - lam, 0.0, room)
    # Rounding in the running sums can leave the norm a hair above eps; shrinking keeps the box.
    norm = tf.reduce_sum(tf.abs(d), axis=1, keepdims=True)
    d = d * tf.minimum(1.0, eps / tf.maximum(norm, _TINY))
    return tf.reshape(tf.clip_by_value(centre + d, 0.0, 1.0), shape)


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """The norm-specific parts of an attack."""

    init: Callable
    step: Callable
    project: Callable


THREAT_MODELS = {
    "linf": ThreatModel(init=linf_init, step=sign_step, project=linf_project),
    "l2": ThreatModel(init=l2_init, step=l2_step, project=l2_project),
}


def get(norm):
    """Returns the `ThreatModel` for `norm` ("linf" or "l2")."""
    if norm not in THREAT_MODELS:
        raise ValueError(
            f"Unknown norm; expected one of {sorted(THREAT_MODELS)}. "
            f"Received: norm={norm!r}"
        )
    return THREAT_MODELS[norm]


# The norms `distance` measures (L1 has a projection, `l1_project`, but no PGD threat model).
NORMS = ("linf", "l2", "l1")


def distance(x_adv, x, norm):
    """Per-example distance between x_adv and x in `norm` (one of `NORMS`), shape `[B]`."""
    delta = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
    if norm == "linf":
        return tf.reduce_max(tf.abs(delta), axis=1)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(delta), axis=1)
    return tf.norm(delta, axis=1)
