"""AdversarialModel: adversarial training and robust evaluation behind `model.fit`."""

import fractions

import keras
import tensorflow as tf

from tfrobust import keras_compat
from tfrobust.attacks import base as attack_base
from tfrobust.attacks import losses as attack_losses
from tfrobust.attacks import registry as attack_registry
from tfrobust.attacks.pgd import PGD
from tfrobust import seeds as seeds_lib
from tfrobust.models import mixbn

TRADES_INITS = ("gaussian", "uniform")
TRADES_BN = ("separate", "adversarial", "joint")
METHODS = ("standard", "pgd", "fgsm_rs", "nfgsm", "trades")


def _check_arguments(classifier, method, attack, clean_ratio, eps_warmup_steps, trades_init, trades_bn,
                     attack_jit, attack_branch, generated_label_smoothing):
    """Raises TypeError or ValueError, naming the argument, for what `AdversarialModel` cannot train with."""
    if not isinstance(classifier, keras.Model):
        raise TypeError(
            "classifier must be a keras.Model that outputs logits. "
            f"Received: classifier={type(classifier).__name__}"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    if method != "standard" and attack is None:
        raise ValueError(f"method={method!r} needs an attack. Received: attack=None")
    if trades_init not in TRADES_INITS:
        raise ValueError(f"trades_init must be one of {TRADES_INITS}. Received: trades_init={trades_init!r}")
    if trades_bn not in TRADES_BN:
        raise ValueError(f"trades_bn must be one of {TRADES_BN}. Received: trades_bn={trades_bn!r}")
    if not 0.0 <= float(clean_ratio) < 1.0:
        raise ValueError(f"clean_ratio must be in [0, 1). Received: clean_ratio={clean_ratio}")
    if int(eps_warmup_steps) < 0:
        raise ValueError(f"eps_warmup_steps must be >= 0. Received: eps_warmup_steps={eps_warmup_steps}")
    if attack_jit not in (True, False, "auto"):
        raise ValueError(f"attack_jit must be True, False or 'auto'. Received: attack_jit={attack_jit!r}")
    if attack_branch not in mixbn.BRANCHES:
        raise ValueError(f"attack_branch must be one of {mixbn.BRANCHES}. Received: attack_branch={attack_branch!r}")
    if mixbn.has_mixbn(classifier) and method == "trades":
        raise ValueError("method='trades' does not support MixBN classifiers: TRADES' KL term "
                         "compares clean and adversarial outputs of one network.")
    if not 0.0 <= float(generated_label_smoothing) < 1.0:
        raise ValueError("generated_label_smoothing must be in [0, 1). "
                         f"Received: generated_label_smoothing={generated_label_smoothing}")


@keras.saving.register_keras_serializable(package="tfrobust")
class AdversarialModel(keras.Model):
    """Wraps a Keras classifier that outputs logits, and trains it adversarially.

    `train_step` implements the method chosen by `method`, and `test_step`
    reports clean accuracy and robust accuracy under `eval_attack`. It works
    with `fit`, `evaluate` and `predict`, and under `tf.distribute` strategies:
    the loss is scaled per replica as Keras' own losses are, so gradients match
    a single-device run on the same global batch.

    Methods:
    - "standard": no attack, cross-entropy on clean images.
    - "pgd": Madry et al., "Towards deep learning models resistant to
      adversarial attacks", arXiv 1706.06083.
    - "fgsm_rs": Wong et al., "Fast is better than free: revisiting
      adversarial training", arXiv 2001.03994 (pass an `FGSM(random_start=True)`).
    - "nfgsm": de Jorge et al., "Make some noise: reliable and efficient
      single-step adversarial training", arXiv 2202.01181 (pass an `NFGSM`).
    - "trades": Zhang et al., "Theoretically principled trade-off between
      robustness and accuracy", arXiv 1901.08573: CE(f(x), y) +
      beta * KL(f(x) || f(x_adv)), with x_adv maximising the KL term.

    Attacks never update BatchNorm's moving statistics: they run the classifier
    with `training=False` (or `bn="batch_stats"`, which drops the updates). Only
    the training passes on the images that the loss is computed on update
    them (for TRADES, see `trades_bn`).

    Batches are `({"image": x, "seed": seeds}, y)` as `tfrobust.data` yields
    them; plain `(x, y)` also works, with seeds derived from the images and
    the step counter.

    Every train and test step checks its batch (a min, a max and an
    is_finite): `fit` and `evaluate` raise a ValueError or TypeError naming
    `x` or `y` for NaN or inf images, images outside [0, 1], labels that are
    not integer class indices `[B]` (or `[B, 1]`) in [0, num_classes), and
    labels and images of different lengths. The attack may be XLA-compiled
    (`attack_jit`): the step checks the batch before it. A step that is
    itself XLA-compiled (`compile(jit_compile=True)`) cannot check values,
    since XLA drops asserts; it warns when traced.

    Args:
        classifier: a `keras.Model` mapping float32 NHWC [0, 1] images to logits.
        attack: the training attack (e.g. `PGD(eps=0.3, steps=7)`); required
            unless method is "standard". For "trades" its loss is replaced by
            "kl" and its start by `trades_init`, and the clean probabilities
            it moves away from use the attack's BatchNorm mode (`bn`).
        method: one of "standard", "pgd", "fgsm_rs", "nfgsm", "trades".
        eval_attack: the attack `test_step` reports robust accuracy under;
            None reports clean accuracy only.
        clean_ratio: share of each batch trained on clean images, in [0, 1).
            0 is adversarial only; 0.5 is a 1:1 mix. The clean examples are
            picked by position with a fixed period (0.5: every other one), so
            the split matches across replica counts when the per-replica batch
            is a multiple of the period.
        trades_beta: TRADES' beta. Default 6.0.
        trades_init: the start of TRADES' attack: "gaussian", TRADES'
            `x + 0.001 N(0, 1)` (Zhang et al., arXiv 1901.08573), or
            "uniform" in the eps-ball, as Gowal et al.'s code starts it.
        trades_bn: how TRADES' training passes meet BatchNorm. "separate"
            (the default): the clean and the adversarial images are two
            training passes, each normalised with its own batch statistics,
            as in Zhang et al.'s code, and both update the moving statistics
            (theirs runs the clean pass twice, so three updates a step, the
            last from a clean batch; here two, the last adversarial).
            "adversarial": the same two passes, but only the adversarial one
            updates the moving statistics, as Gowal et al.'s code. With a
            batch-statistics attack (`bn="batch_stats"`) its clean pass is
            also the attack's KL target: one forward pass fewer a step, but
            that pass's activations stay in memory while the attack runs.
            "joint": one pass over clean and adversarial images together,
            whose batch statistics mix both (what tfrobust did before this
            option; models saved without it load as "joint").
        eps_warmup_steps: ramp eps (and the step size) linearly from 0 to its
            value over this many optimizer steps. 0 disables the warm-up.
        attack_jit: compile the attack with XLA: True, False or "auto"
            (XLA when a GPU or TPU is present; on CPU it is slower, see
            PLATFORM.md).
        generated_label_smoothing: label smoothing applied to the examples
            whose batch feature `generated` is True (Gowal et al., arXiv
            2110.09468, smooth the generated part only); 0 disables it.
            Batches from `data.pipelines.mixed_train_dataset` carry the flag.
        attack_branch: for a classifier with MixBN layers
            (`tfrobust.models.mixbn`), the BatchNorm branch the training
            attack runs through: "adv" (Xie & Yuille) or "clean". The clean
            part of each batch is trained through the clean branch and the
            adversarial part through the adversarial branch, in two forward
            passes; evaluation uses the layers' inference branch. Ignored
            without MixBN layers, where a mixed batch is one forward pass
            whose BatchNorm statistics mix both domains.
        **kwargs: passed to `keras.Model`.
    """

    def __init__(
        self,
        classifier,
        attack=None,
        method="pgd",
        eval_attack=None,
        clean_ratio=0.0,
        trades_beta=6.0,
        eps_warmup_steps=0,
        trades_init="gaussian",
        trades_bn="separate",
        attack_jit="auto",
        attack_branch="adv",
        generated_label_smoothing=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_arguments(classifier, method, attack, clean_ratio, eps_warmup_steps, trades_init, trades_bn,
                         attack_jit, attack_branch, generated_label_smoothing)
        attack = _as_attack(attack, "attack")
        if method == "trades":
            attack = attack.replace(loss="kl", init=trades_init, select="last")
        self._mixbn = mixbn.has_mixbn(classifier)
        self.classifier = classifier
        self.attack_branch = attack_branch
        self.generated_label_smoothing = float(generated_label_smoothing)
        if classifier.built:
            # The wrapper adds no weights of its own, so it is built when the
            # classifier is (and saves without Keras' unbuilt-model warning).
            self.built = True
        self.attack = attack
        self.method = method
        self.eval_attack = _as_attack(eval_attack, "eval_attack")
        self.clean_ratio = float(clean_ratio)
        self.trades_beta = float(trades_beta)
        self.trades_init = trades_init
        self.trades_bn = trades_bn
        self.eps_warmup_steps = int(eps_warmup_steps)
        self.attack_jit = attack_jit
        self._clean_period = fractions.Fraction(self.clean_ratio).limit_denominator(64)

        jit = resolve_attack_jit(attack_jit)
        self._train_attack_fn = self._compile(self.attack, jit)
        self._eval_attack_fn = self._compile(self.eval_attack, jit)

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.clean_accuracy = keras.metrics.SparseCategoricalAccuracy(name="clean_accuracy")
        self.adv_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        self.robust_accuracy = keras.metrics.SparseCategoricalAccuracy(name="robust_accuracy")

    def _compile(self, attack, jit):
        if attack is None:
            return None

        def run(x, y, seeds, eps_scale):
            # The train and test steps have checked the batch (`_unpack`); inside XLA the attack could not.
            with attack_base.inputs_checked():
                return attack(self.classifier, x, y, seeds, eps_scale=eps_scale)

        # A tf.function of its own lets XLA compile the attack alone, which
        # works under MirroredStrategy where fit(jit_compile=True) does not.
        return tf.function(run, jit_compile=jit, reduce_retracing=True)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; a batch that fails the input checks raises a ValueError that says why."""
        with attack_base.input_errors():
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`; a batch that fails the input checks raises a ValueError that says why."""
        with attack_base.input_errors():
            return super().evaluate(*args, **kwargs)

    def set_bn_branch(self, branch):
        """Sets the inference branch of the classifier's MixBN layers ("clean" or "adv").

        The evaluation attack and Keras' cached functions are retraced, so
        `evaluate`, `predict` and the next epoch's validation use the new branch.
        """
        mixbn.set_branch(self.classifier, branch)
        self._eval_attack_fn = self._compile(self.eval_attack, resolve_attack_jit(self.attack_jit))
        for attr in ("predict_function", "test_function"):
            setattr(self, attr, None)

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Like `keras.Model.compile`; the loss defaults to cross-entropy on logits."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this for models that override compile(); without it a
        # loaded model would lose its optimizer state, and resume with it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 learns the input shapes from a sample batch averaged over
        # the replicas with strategy.reduce, which MultiWorkerMirroredStrategy
        # cannot do for nested (dict) batches such as {"image", "seed"}. The
        # first local replica's values have the shapes that are needed.
        if self._distribute_strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: (self.distribute_strategy.experimental_local_results(v)[0]
                           if isinstance(v, tf.distribute.DistributedValues) else v),
                next(it),
            )
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def call(self, inputs, training=False):
        return self.classifier(_images(inputs), training=training)

    @property
    def metrics(self):
        # Only the trackers this model updates, so the progress bar and the
        # logs show exactly what was measured on each batch.
        return [self.loss_tracker, self.clean_accuracy, self.adv_accuracy, self.robust_accuracy]

    def eps_scale(self):
        """The warm-up factor in [0, 1] at the current optimizer step."""
        if self.eps_warmup_steps == 0 or self.optimizer is None:
            return tf.constant(1.0)
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return tf.minimum(1.0, (step + 1.0) / float(self.eps_warmup_steps))

    def _generated(self, data):
        """The batch's per-example `generated` flags, or None."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return x.get("generated") if isinstance(x, dict) else None

    def _unpack(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        seeds = x.get("seed") if isinstance(x, dict) else None
        if y is None:
            raise ValueError("AdversarialModel needs labels. Received: y=None")
        # A min, a max and an is_finite over the batch: NaN or 0-255 images and float, one-hot or out-of-range
        # labels would otherwise train (or fail deep inside TensorFlow) without saying why. The names are
        # those of fit's arguments.
        x, y = attack_base.check_inputs(_images(x), y, num_classes=attack_base.output_classes(self.classifier))
        y = tf.cast(y, tf.int64)
        if seeds is None:
            seeds = self._fallback_seeds(x)
        return x, y, tf.cast(seeds, seeds_lib.SEED_DTYPE)

    def _fallback_seeds(self, x):
        # Seeds from the image content and the step, not from the replica or
        # a stateful generator, so every replica count gives the same noise.
        pixels = tf.cast(tf.round(tf.reshape(x, [tf.shape(x)[0], -1]) * 255.0), tf.int32)
        weights = tf.range(1, tf.shape(pixels)[1] + 1, dtype=tf.int32)
        content = tf.reduce_sum(pixels * weights, axis=1)
        step = self.optimizer.iterations if self.optimizer is not None else 0
        step = tf.fill(tf.shape(content), tf.cast(step, tf.int32))
        return seeds_lib.derive(tf.stack([content, step], 1), seeds_lib.ATTACK_SALT)

    def _split_indices(self, batch):
        p, q = self._clean_period.numerator, self._clean_period.denominator
        is_clean = tf.range(batch) % q < p
        return tf.where(is_clean)[:, 0], tf.where(tf.logical_not(is_clean))[:, 0]

    def _train_order(self, t):
        """Per-example values `t` in the order train_step trains on: clean part, then attacked part."""
        if self.method in ("standard", "trades") or self.clean_ratio == 0.0:
            return t
        clean_idx, adv_idx = self._split_indices(tf.shape(t)[0])
        return tf.concat([tf.gather(t, clean_idx), tf.gather(t, adv_idx)], 0)

    def _smoothing_term(self, data, y_train, logits):
        """Extra loss that turns cross-entropy into label-smoothed CE on generated examples."""
        generated = self._generated(data)
        if generated is None or self.generated_label_smoothing == 0.0:
            return 0.0
        eps = self._train_order(tf.cast(generated, tf.float32)) * self.generated_label_smoothing
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
        ce = -tf.gather(log_probs, y_train, batch_dims=1)
        uniform = -tf.reduce_mean(log_probs, axis=-1)
        # (1 - e) CE + e U = CE + e (U - CE): smoothing towards the uniform distribution.
        return keras_compat.scale_loss_for_distribution(tf.reduce_mean(eps * (uniform - ce)))

    def _split(self, x, y, seeds):
        """Splits a batch into its clean part and the part to attack."""
        clean_idx, adv_idx = self._split_indices(tf.shape(x)[0])
        pick = lambda t, idx: tf.gather(t, idx)  # noqa: E731
        return (
            (pick(x, clean_idx), pick(y, clean_idx)),
            (pick(x, adv_idx), pick(y, adv_idx), pick(seeds, adv_idx)),
        )

    def train_step(self, data):
        x, y, seeds = self._unpack(data)
        eps_scale = self.eps_scale()
        if self.method == "trades":
            return self._trades_step(data, x, y, seeds, eps_scale)

        n_clean = tf.constant(0)
        x_clean = y_clean = x_adv = y_adv = None
        if self.method == "standard":
            x_clean, y_clean = x, y
        elif self.clean_ratio == 0.0:
            x_adv, y_adv = self._attack(x, y, seeds, eps_scale), y
        else:
            (x_clean, y_clean), (x_a, y_adv, s_a) = self._split(x, y, seeds)
            x_adv = self._attack(x_a, y_adv, s_a, eps_scale)
            n_clean = tf.shape(x_clean)[0]
        y_train = tf.concat([t for t in (y_clean, y_adv) if t is not None], 0)

        with tf.GradientTape() as tape:
            logits = self._train_logits(x_clean, x_adv)
            loss = self.compute_loss(x=x, y=y_train, y_pred=logits, training=True)
            loss = loss + self._smoothing_term(data, y_train, logits)
            scaled = self.optimizer.scale_loss(loss)
        self._apply(tape, scaled)
        self.loss_tracker.update_state(
            keras_compat.unscale_loss_for_distribution(loss), sample_weight=tf.shape(x)[0]
        )
        if self.method == "standard":
            self.clean_accuracy.update_state(y_train, logits)
        else:
            self.clean_accuracy.update_state(y_train[:n_clean], logits[:n_clean])
            self.adv_accuracy.update_state(y_train[n_clean:], logits[n_clean:])
        return self._results(train=True)

    def _attack(self, x, y, seeds, eps_scale):
        with mixbn.route(self.classifier, self.attack_branch):
            return self._train_attack_fn(x, y, seeds, eps_scale)

    def _train_logits(self, x_clean, x_adv):
        """Training-mode logits of [clean part, adversarial part]; either may be None."""
        if not self._mixbn:
            # One pass: with plain BatchNorm the statistics mix both parts.
            parts = [t for t in (x_clean, x_adv) if t is not None]
            x_train = parts[0] if len(parts) == 1 else tf.concat(parts, 0)
            return self.classifier(x_train, training=True)
        logits = []
        for part, branch in ((x_clean, "clean"), (x_adv, "adv")):
            if part is not None:
                with mixbn.route(self.classifier, branch):
                    logits.append(self.classifier(part, training=True))
        return logits[0] if len(logits) == 1 else tf.concat(logits, 0)

    def _trades_step(self, data, x, y, seeds, eps_scale):
        # With the attack in batch-statistics mode, the KL target it needs is the value of a clean pass that
        # normalises with its own batch (Gowal et al.'s code, Haiku's test_local_stats). The "adversarial" BN
        # mode trains on exactly that pass, statelessly, so it is computed once, in the tape, and the attack runs
        # with recording paused. Not in "separate" mode: its clean pass updates state that a batch-statistics
        # pass reads (Dropout's seed, BatchNormalization(renorm=True)'s statistics), so running it before the
        # attack would change the attack.
        reuse_clean = self.attack.bn == "batch_stats" and self.trades_bn == "adversarial"
        with tf.GradientTape() as tape:
            if reuse_clean:
                logits_clean = self._trades_clean_logits(x)
            with tape.stop_recording():
                if reuse_clean:
                    target_logits = logits_clean
                elif self.attack.bn == "batch_stats":
                    target_logits = attack_base.stateless_training_forward(self.classifier)(x)
                else:
                    target_logits = self.classifier(x, training=False)
                clean_probs = tf.nn.softmax(tf.cast(tf.stop_gradient(target_logits), tf.float32))
                x_adv = self._train_attack_fn(x, clean_probs, seeds, eps_scale)
            if reuse_clean:
                logits_adv = self.classifier(x_adv, training=True)
            else:
                logits_clean, logits_adv = self._trades_logits(x, x_adv)
            natural = self.compute_loss(x=x, y=y, y_pred=logits_clean, training=True)
            natural = natural + self._smoothing_term(data, y, logits_clean)
            kl = attack_losses.kl_divergence(
                tf.cast(logits_adv, tf.float32),
                tf.nn.softmax(tf.cast(logits_clean, tf.float32)),
            )
            robust = keras_compat.scale_loss_for_distribution(tf.reduce_mean(kl))
            loss = natural + self.trades_beta * robust
            scaled = self.optimizer.scale_loss(loss)
        self._apply(tape, scaled)
        self.loss_tracker.update_state(
            keras_compat.unscale_loss_for_distribution(loss), sample_weight=tf.shape(x)[0]
        )
        self.clean_accuracy.update_state(y, logits_clean)
        self.adv_accuracy.update_state(y, logits_adv)
        return self._results(train=True)

    def _trades_logits(self, x, x_adv):
        """Training-mode logits of the clean and the adversarial images, as `trades_bn` asks."""
        if self.trades_bn == "joint":
            logits = self.classifier(tf.concat([x, x_adv], 0), training=True)
            batch = tf.shape(x)[0]
            return logits[:batch], logits[batch:]
        return self._trades_clean_logits(x), self.classifier(x_adv, training=True)

    def _trades_clean_logits(self, x):
        """The clean training pass of the "separate" and "adversarial" modes."""
        if self.trades_bn == "separate":
            return self.classifier(x, training=True)
        # "adversarial": the clean pass still normalises with its own batch statistics, and gradients flow
        # through it, but its new moving statistics are dropped.
        return attack_base.stateless_training_forward(self.classifier)(x)

    def _apply(self, tape, loss):
        variables = self.classifier.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)

    def test_step(self, data):
        x, y, seeds = self._unpack(data)
        logits = self.classifier(x, training=False)
        loss = self.compute_loss(x=x, y=y, y_pred=logits, training=False)
        self.loss_tracker.update_state(
            keras_compat.unscale_loss_for_distribution(loss), sample_weight=tf.shape(x)[0]
        )
        self.clean_accuracy.update_state(y, logits)
        if self._eval_attack_fn is not None:
            x_adv = self._eval_attack_fn(x, y, seeds, tf.constant(1.0))
            self.robust_accuracy.update_state(y, self.classifier(x_adv, training=False))
        return self._results(train=False)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.classifier(_images(x), training=False)

    def _results(self, train):
        shown = [self.loss_tracker]
        trains_on_clean = self.method in ("standard", "trades") or self.clean_ratio > 0
        if not train or trains_on_clean:
            shown.append(self.clean_accuracy)
        if train and self.method != "standard":
            shown.append(self.adv_accuracy)
        if not train and self.eval_attack is not None:
            shown.append(self.robust_accuracy)
        results = {m.name: m.result() for m in shown}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 averages logs across workers with reduce(MEAN, axis=0),
            # which fails on scalars; as [1] vectors they reduce to the scalar.
            results = {k: tf.reshape(v, [1]) for k, v in results.items()}
        return results

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "classifier": keras.saving.serialize_keras_object(self.classifier),
                "attack": None if self.attack is None else self.attack.get_config(),
                "method": self.method,
                "eval_attack": None if self.eval_attack is None else self.eval_attack.get_config(),
                "clean_ratio": self.clean_ratio,
                "trades_beta": self.trades_beta,
                "trades_init": self.trades_init,
                "trades_bn": self.trades_bn,
                "eps_warmup_steps": self.eps_warmup_steps,
                "attack_jit": self.attack_jit,
                "attack_branch": self.attack_branch,
                "generated_label_smoothing": self.generated_label_smoothing,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if config.get("method") == "trades":
            # Saved before trades_bn existed: TRADES then ran one joint pass.
            config.setdefault("trades_bn", "joint")
        config["classifier"] = keras.saving.deserialize_keras_object(
            config["classifier"], custom_objects=custom_objects
        )
        return cls(**config)


def _images(inputs):
    return inputs["image"] if isinstance(inputs, dict) else inputs


def _as_attack(attack, name):
    if attack is None or isinstance(attack, PGD):
        return attack
    if isinstance(attack, dict):
        return attack_registry.from_config(attack)
    raise TypeError(
        f"{name} must be an attack such as tfrobust.attacks.PGD(...) or its config. "
        f"Received: {name}={type(attack).__name__}"
    )


def resolve_attack_jit(attack_jit):
    """Whether the attacks are XLA-compiled.

    Args:
        attack_jit: True, False or "auto" (`AdversarialModel`'s default): on
            GPUs and TPUs, where XLA is faster; not on CPUs, where it is slower.

    Returns:
        A bool.
    """
    if attack_jit != "auto":
        return bool(attack_jit)
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


__all__ = ["AdversarialModel", "METHODS"]
