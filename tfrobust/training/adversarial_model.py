"""AdversarialModel: adversarial training and robust evaluation behind `model.fit`."""

import keras
import tensorflow as tf

from tfrobust import keras_compat
from tfrobust.attacks import base as attack_base
from tfrobust.attacks import registry as attack_registry
from tfrobust.attacks.pgd import PGD
from tfrobust import seeds as seeds_lib
from tfrobust.models import mixbn
from tfrobust.training import objectives
from tfrobust.training.objectives import METHODS


def _check_arguments(classifier, method, attack, clean_ratio, eps_warmup_steps, attack_jit, attack_branch,
                     generated_label_smoothing):
    """Raises TypeError or ValueError, naming the argument, for what `AdversarialModel` cannot train with."""
    if not isinstance(classifier, keras.Model):
        raise TypeError(
            "classifier must be a keras.Model that outputs logits. "
            f"Received: classifier={type(classifier).__name__}"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}. Received: method={method!r}")
    if METHODS[method].uses_attack and attack is None:
        raise ValueError(f"method={method!r} needs an attack. Received: attack=None")
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

    `train_step` runs the training objective of `method`
    (`tfrobust.training.objectives`: attack -> objective -> apply), and
    `test_step` reports clean accuracy and robust accuracy under
    `eval_attack`. It works with `fit`, `evaluate` and `predict`, and under
    `tf.distribute` strategies: the loss is scaled per replica as Keras' own
    losses are, so gradients match a single-device run on the same global
    batch.

    Methods (`objectives.METHODS`):
    - "standard": no attack, cross-entropy on clean images.
    - "pgd", "fgsm_rs", "nfgsm": cross-entropy on the attack's images
      (`objectives.Adversarial`); the attack passed decides the method: PGD
      (Madry et al., arXiv 1706.06083), FGSM-RS (Wong et al., arXiv
      2001.03994) or N-FGSM (de Jorge et al., arXiv 2202.01181).
    - "trades": Zhang et al., "Theoretically principled trade-off between
      robustness and accuracy", arXiv 1901.08573 (`objectives.TRADES`).

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
        trades_bn: how TRADES' training passes meet BatchNorm: "separate"
            (the default), "adversarial" or "joint" (see `objectives.TRADES`).
            With "adversarial" and a batch-statistics attack
            (`bn="batch_stats"`) the clean pass is also the attack's KL target:
            one forward pass fewer a step, but that pass's activations stay
            in memory while the attack runs. Models saved without the option
            load as "joint".
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
        _check_arguments(classifier, method, attack, clean_ratio, eps_warmup_steps, attack_jit, attack_branch,
                         generated_label_smoothing)
        self.objective = objectives.build(method, clean_ratio=clean_ratio, trades_beta=trades_beta,
                                          trades_init=trades_init, trades_bn=trades_bn)
        attack = _as_attack(attack, "attack")
        if attack is not None and self.objective.attack_overrides():
            attack = attack.replace(**self.objective.attack_overrides())
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
        return attack_base.compiled(run, jit_compile=jit, reduce_retracing=True)

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

    def train_step(self, data):
        x, y, seeds = self._unpack(data)
        batch = objectives.Batch(x, y, seeds, self._generated(data))
        with tf.GradientTape() as tape:
            outcome = self.objective(_Step(self, tape, self.eps_scale()), batch)
            scaled = self.optimizer.scale_loss(outcome.loss)
        variables = self.classifier.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.loss_tracker.update_state(
            keras_compat.unscale_loss_for_distribution(outcome.loss), sample_weight=tf.shape(x)[0]
        )
        for metric, part in ((self.clean_accuracy, outcome.clean), (self.adv_accuracy, outcome.adv)):
            if part is not None:
                metric.update_state(*part)
        return self._results(train=True)

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
        if not train or self.objective.trains_on_clean:
            shown.append(self.clean_accuracy)
        if train and self.objective.uses_attack:
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


class _Step:
    """What an objective may do in one `AdversarialModel.train_step` (see `objectives.Objective`)."""

    def __init__(self, model, tape, eps_scale):
        self._model = model
        self._tape = tape
        self._eps_scale = eps_scale
        self.classifier = model.classifier
        self.attack_bn = None if model.attack is None else model.attack.bn

    def attack(self, x, y, seeds):
        """The training attack's images, through the MixBN branch `attack_branch`, outside the tape."""
        with self._tape.stop_recording(), mixbn.route(self.classifier, self._model.attack_branch):
            return self._model._train_attack_fn(x, y, seeds, self._eps_scale)

    def target_logits(self, x):
        """Logits of `x` in the attack's BatchNorm mode, outside the tape: TRADES' KL target."""
        with self._tape.stop_recording():
            if self.attack_bn == "batch_stats":
                return attack_base.stateless_training_forward(self.classifier)(x)
            return self.classifier(x, training=False)

    def logits(self, x_clean, x_adv):
        """Training-mode logits of [clean part, adversarial part]; either may be None.

        With MixBN layers each part goes through its own branch; with plain
        BatchNorm it is one pass, whose statistics mix both parts.
        """
        if not self._model._mixbn:
            parts = [t for t in (x_clean, x_adv) if t is not None]
            return self.classifier(parts[0] if len(parts) == 1 else tf.concat(parts, 0), training=True)
        logits = []
        for part, branch in ((x_clean, "clean"), (x_adv, "adv")):
            if part is not None:
                with mixbn.route(self.classifier, branch):
                    logits.append(self.classifier(part, training=True))
        return logits[0] if len(logits) == 1 else tf.concat(logits, 0)

    def stateless_logits(self, x):
        """A training-mode pass (batch statistics, gradients) whose new moving statistics are dropped."""
        return attack_base.stateless_training_forward(self.classifier)(x)

    def cross_entropy(self, y, logits, generated):
        """The compiled loss (with the regularisation losses), label-smoothed on generated examples."""
        model = self._model
        loss = model.compute_loss(x=None, y=y, y_pred=logits, training=True)
        if generated is None or model.generated_label_smoothing == 0.0:
            return loss
        eps = tf.cast(generated, tf.float32) * model.generated_label_smoothing
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
        ce = -tf.gather(log_probs, y, batch_dims=1)
        uniform = -tf.reduce_mean(log_probs, axis=-1)
        # (1 - e) CE + e U = CE + e (U - CE): smoothing towards the uniform distribution.
        return loss + keras_compat.scale_loss_for_distribution(tf.reduce_mean(eps * (uniform - ce)))


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
