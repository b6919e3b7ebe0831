"""Training objectives: what one `AdversarialModel.train_step` minimises.

An objective turns a batch into a loss: it asks the step for adversarial
images and for training-mode logits, and returns the loss together with the
logits it used, so that the step can apply the gradients and update the
metrics. `train_step` is then attack -> objective -> apply.

Adding a training method is one class here and one line in `METHODS`.
"""

import collections
import fractions

import tensorflow as tf

from tfrobust import keras_compat
from tfrobust.attacks import losses as attack_losses

Batch = collections.namedtuple("Batch", "x y seeds generated")
Batch.__doc__ = """One checked training batch: images [B, H, W, C] in [0, 1], int64 labels [B], seeds [B, 2] and
the per-example `generated` flags (None when the data has none)."""

Outcome = collections.namedtuple("Outcome", "loss clean adv")
Outcome.__doc__ = """What an objective returns: the scalar loss (already scaled per replica), and `(labels, logits)`
of the clean and of the adversarial images it trained on, each None when it trained on none."""


class Objective:
    """A training method: `objective(step, batch) -> Outcome`.

    `step` is the `AdversarialModel` step's toolbox (`Step`): `step.attack`
    (BatchNorm routing, the eps warm-up and the compiled attack), `step.logits`
    (training-mode passes, MixBN routing) and `step.cross_entropy` (the
    compiled loss, with the model's regularisation losses and label smoothing
    on generated examples; call it once a step). The call runs inside the
    step's gradient tape; `step.attack` pauses the recording.

    Attributes:
        name: the method's name in `METHODS`.
        uses_attack: whether `AdversarialModel` needs a training attack.
        trains_on_clean: whether some of the loss is computed on clean images
            (the progress bar then shows the training clean accuracy).
    """

    name = None
    uses_attack = True

    @property
    def trains_on_clean(self):
        return True

    @classmethod
    def from_options(cls, method, **options):
        """The objective of `method` from `AdversarialModel`'s options (see `build`)."""
        return cls()

    def attack_overrides(self):
        """Attack parameters this objective fixes (TRADES attacks the KL term), as `attack.replace` kwargs."""
        return {}

    def __call__(self, step, batch):
        raise NotImplementedError


class Standard(Objective):
    """Cross-entropy on clean images: no attack."""

    name = "standard"
    uses_attack = False

    def __call__(self, step, batch):
        logits = step.logits(batch.x, None)
        loss = step.cross_entropy(batch.y, logits, batch.generated)
        return Outcome(loss, (batch.y, logits), None)


class Adversarial(Objective):
    """Cross-entropy on adversarial images, optionally mixed with clean ones.

    The attack decides the method: PGD (Madry et al., "Towards deep learning
    models resistant to adversarial attacks", arXiv 1706.06083), FGSM-RS
    (Wong et al., "Fast is better than free: revisiting adversarial
    training", arXiv 2001.03994) or N-FGSM (de Jorge et al., "Make some noise:
    reliable and efficient single-step adversarial training", arXiv
    2202.01181). With `clean_ratio > 0` part of every batch is trained clean,
    as in Xie & Yuille's mixed batches (arXiv 1906.03787).

    Args:
        name: the method's name ("pgd", "fgsm_rs" or "nfgsm").
        clean_ratio: share of each batch trained on clean images, in [0, 1).
            The clean examples are picked by position with a fixed period
            (0.5: every other one), so the split matches across replica counts
            when the per-replica batch is a multiple of the period.
    """

    def __init__(self, name="pgd", clean_ratio=0.0):
        self.name = name
        self.clean_ratio = float(clean_ratio)
        self._period = fractions.Fraction(self.clean_ratio).limit_denominator(64)

    @classmethod
    def from_options(cls, method, clean_ratio=0.0, **_):
        return cls(method, clean_ratio)

    @property
    def trains_on_clean(self):
        return self.clean_ratio > 0

    def split(self, batch_size):
        """(indices of the clean part, indices of the part to attack) of a batch of `batch_size`."""
        p, q = self._period.numerator, self._period.denominator
        is_clean = tf.range(batch_size) % q < p
        return tf.where(is_clean)[:, 0], tf.where(tf.logical_not(is_clean))[:, 0]

    def __call__(self, step, batch):
        if self.clean_ratio == 0.0:
            x_adv = step.attack(batch.x, batch.y, batch.seeds)
            logits = step.logits(None, x_adv)
            loss = step.cross_entropy(batch.y, logits, batch.generated)
            return Outcome(loss, None, (batch.y, logits))
        clean_idx, adv_idx = self.split(tf.shape(batch.x)[0])
        clean, adv = ([None if t is None else tf.gather(t, idx) for t in batch] for idx in (clean_idx, adv_idx))
        x_adv = step.attack(adv[0], adv[1], adv[2])
        logits = step.logits(clean[0], x_adv)
        y = tf.concat([clean[1], adv[1]], 0)
        generated = None if batch.generated is None else tf.concat([clean[3], adv[3]], 0)
        loss = step.cross_entropy(y, logits, generated)
        n_clean = tf.shape(clean_idx)[0]
        return Outcome(loss, (y[:n_clean], logits[:n_clean]), (y[n_clean:], logits[n_clean:]))


class TRADES(Objective):
    """CE(f(x), y) + beta * KL(f(x) || f(x_adv)), with x_adv maximising the KL term.

    Zhang et al., "Theoretically principled trade-off between robustness and
    accuracy", arXiv 1901.08573.

    Args:
        beta: the KL term's weight. Default 6.0.
        init: the attack's start: "gaussian", TRADES' `x + 0.001 N(0, 1)`, or
            "uniform" in the eps-ball, as Gowal et al.'s code starts it.
        bn: how the training passes meet BatchNorm. "separate": the clean and
            the adversarial images are two training passes, each normalised
            with its own batch statistics, as in Zhang et al.'s code, and both
            update the moving statistics (theirs runs the clean pass twice,
            so three updates a step, the last from a clean batch; here two,
            the last adversarial). "adversarial": the same two passes, but
            only the adversarial one updates the moving statistics, as Gowal
            et al.'s code. "joint": one pass over clean and adversarial images
            together, whose batch statistics mix both.
    """

    name = "trades"
    INITS = ("gaussian", "uniform")
    BN_MODES = ("separate", "adversarial", "joint")

    def __init__(self, beta=6.0, init="gaussian", bn="separate"):
        if init not in self.INITS:
            raise ValueError(f"trades_init must be one of {self.INITS}. Received: trades_init={init!r}")
        if bn not in self.BN_MODES:
            raise ValueError(f"trades_bn must be one of {self.BN_MODES}. Received: trades_bn={bn!r}")
        self.beta = float(beta)
        self.init = init
        self.bn = bn

    @classmethod
    def from_options(cls, method, trades_beta=6.0, trades_init="gaussian", trades_bn="separate", **_):
        return cls(trades_beta, trades_init, trades_bn)

    def attack_overrides(self):
        return {"loss": "kl", "init": self.init, "select": "last"}

    def __call__(self, step, batch):
        x = batch.x
        # With a batch-statistics attack, the KL target it needs is the value of a clean pass that normalises with
        # its own batch (Gowal et al.'s code). The "adversarial" BN mode trains on exactly that pass, statelessly,
        # so it is computed once and the attack reuses it. Not in "separate" mode: its clean pass updates state that
        # a batch-statistics pass reads (Dropout's seed, BatchNormalization(renorm=True)'s statistics), so running
        # it before the attack would change the attack.
        reuse_clean = step.attack_bn == "batch_stats" and self.bn == "adversarial"
        if reuse_clean:
            logits_clean = step.stateless_logits(x)
            target_logits = logits_clean
        else:
            target_logits = step.target_logits(x)
        clean_probs = tf.nn.softmax(tf.cast(tf.stop_gradient(target_logits), tf.float32))
        x_adv = step.attack(x, clean_probs, batch.seeds)
        if reuse_clean:
            logits_adv = step.logits(None, x_adv)
        elif self.bn == "joint":
            logits = step.logits(tf.concat([x, x_adv], 0), None)
            logits_clean, logits_adv = logits[: tf.shape(x)[0]], logits[tf.shape(x)[0]:]
        else:
            logits_clean = step.logits(x, None) if self.bn == "separate" else step.stateless_logits(x)
            logits_adv = step.logits(None, x_adv)
        natural = step.cross_entropy(batch.y, logits_clean, batch.generated)
        kl = attack_losses.kl_divergence(tf.cast(logits_adv, tf.float32),
                                         tf.nn.softmax(tf.cast(logits_clean, tf.float32)))
        robust = keras_compat.scale_loss_for_distribution(tf.reduce_mean(kl))
        return Outcome(natural + self.beta * robust, (batch.y, logits_clean), (batch.y, logits_adv))


METHODS = {
    "standard": Standard,
    "pgd": Adversarial,
    "fgsm_rs": Adversarial,
    "nfgsm": Adversarial,
    "trades": TRADES,
}


def build(method, **options):
    """The `Objective` of a method name, from `AdversarialModel`'s arguments.

    Args:
        method: a name in `METHODS`.
        **options: `clean_ratio`, `trades_beta`, `trades_init` and `trades_bn`;
            each objective takes the ones it uses.

    Raises:
        ValueError: naming `method`, `trades_init` or `trades_bn`, for a value it does not know.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}. Received: method={method!r}")
    return METHODS[method].from_options(method, **options)


__all__ = ["Adversarial", "Batch", "METHODS", "Objective", "Outcome", "Standard", "TRADES", "build"]
