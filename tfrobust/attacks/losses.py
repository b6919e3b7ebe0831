"""Per-example attack losses. Each maps `(logits, labels) -> [B]`; attacks ascend it."""

import tensorflow as tf


def cross_entropy(logits, labels):
    """Softmax cross-entropy with integer labels, per example."""
    labels = tf.cast(labels, tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


def margin(logits, labels):
    """The CW margin loss, `max_{j != y} z_j - z_y`, per example.

    Carlini & Wagner, "Towards evaluating the robustness of neural networks",
    arXiv 1608.04644. Positive exactly when the example is misclassified, and it
    does not saturate the way cross-entropy does on confident models.
    """
    labels = tf.cast(labels, tf.int32)
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    true = tf.reduce_sum(onehot * logits, axis=-1)
    # Pushing the true logit far down keeps it out of the max without -inf,
    # which would give NaN gradients under XLA.
    other = tf.reduce_max(logits - onehot * 1e9, axis=-1)
    return other - true


def target_margin(logits, labels, targets):
    """`z_t - z_y` per example: the loss of the MultiTargeted attack.

    Gowal et al., "An alternative surrogate loss for PGD-based adversarial
    testing", arXiv 1910.09338. Positive when the target's logit beats the
    true one, so the example is then misclassified.
    """
    num_classes = tf.shape(logits)[-1]
    true = tf.reduce_sum(tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=logits.dtype) * logits, -1)
    target = tf.reduce_sum(tf.one_hot(tf.cast(targets, tf.int32), num_classes, dtype=logits.dtype) * logits, -1)
    return target - true


def kl_divergence(logits, target_probs):
    """`KL(target || softmax(logits))` per example: TRADES' inner loss.

    Zhang et al., "Theoretically principled trade-off between robustness and
    accuracy", arXiv 1901.08573. Here `labels` are the clean model's
    probabilities, shape `[B, K]`.
    """
    log_q = tf.nn.log_softmax(logits, axis=-1)
    p = tf.cast(target_probs, logits.dtype)
    log_p = tf.math.log(tf.maximum(p, 1e-12))
    return tf.reduce_sum(p * (log_p - log_q), axis=-1)


def _sorted_logits(logits):
    # Descending; DLR needs the largest, third and fourth largest logits.
    return tf.sort(logits, axis=-1, direction="DESCENDING")


def dlr(logits, labels):
    """The difference-of-logits-ratio loss, per example (untargeted).

    Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", arXiv 2003.01690, eq. 5:
    `-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)`, with `z_pi` the
    logits sorted in decreasing order. Invariant to shifting and rescaling the
    logits, so a model cannot hide behind large logits the way it can under
    cross-entropy. Needs at least 3 classes.
    """
    labels = tf.cast(labels, tf.int32)
    z = _sorted_logits(logits)
    scale = z[..., 0] - z[..., 2] + 1e-12
    return margin(logits, labels) / scale


def dlr_targeted(logits, labels, targets):
    """The targeted DLR loss of APGD-T, per example.

    Croce & Hein, arXiv 2003.01690, eq. 6:
    `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`. Ascending it pushes
    the target logit `z_t` above the true one. Needs at least 4 classes.
    """
    labels = tf.cast(labels, tf.int32)
    targets = tf.cast(targets, tf.int32)
    num_classes = tf.shape(logits)[-1]
    true = tf.reduce_sum(tf.one_hot(labels, num_classes, dtype=logits.dtype) * logits, -1)
    target = tf.reduce_sum(tf.one_hot(targets, num_classes, dtype=logits.dtype) * logits, -1)
    z = _sorted_logits(logits)
    scale = z[..., 0] - 0.5 * (z[..., 2] + z[..., 3]) + 1e-12
    return (target - true) / scale


LOSSES = {"ce": cross_entropy, "margin": margin, "dlr": dlr, "kl": kl_divergence}


def get(name):
    """Returns the loss function registered under `name` (ce, margin, dlr, kl)."""
    if name not in LOSSES:
        raise ValueError(
            f"Unknown attack loss; expected one of {sorted(LOSSES)}. "
            f"Received: loss={name!r}"
        )
    return LOSSES[name]
