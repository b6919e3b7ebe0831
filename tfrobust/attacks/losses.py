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


LOSSES = {"ce": cross_entropy, "margin": margin, "kl": kl_divergence}


def get(name):
    """Returns the loss function registered under `name` (ce, margin, kl)."""
    if name not in LOSSES:
        raise ValueError(
            f"Unknown attack loss; expected one of {sorted(LOSSES)}. "
            f"Received: loss={name!r}"
        )
    return LOSSES[name]
