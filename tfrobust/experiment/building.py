"""A recipe's classifier, optimizer, attacks and compiled `AdversarialModel`, and classifiers loaded from disk."""

import os
import sys

import keras
import tensorflow as tf

from tfrobust import models as models_lib
from tfrobust import run as run_lib
from tfrobust.attacks import registry as attack_registry
from tfrobust.models import folding, mixbn, normalization
from tfrobust.training import AdversarialModel
from tfrobust.training import optimizers as optimizers_lib
from tfrobust.training.schedules import PiecewiseLinear


def training_attack(attack_cfg, eps=None):
    """The attack that `train_step` runs: returns its last iterate, as in the papers."""
    params = {"steps": attack_cfg.steps, "step_size": attack_cfg.step_size, "restarts": attack_cfg.restarts,
              "bn": attack_cfg.bn, "precision": attack_cfg.precision}
    if attack_cfg.name == "stadv":
        return attack_registry.build("stadv", attack_cfg.eps if eps is None else eps, steps=attack_cfg.steps)
    if attack_registry.family(attack_cfg.name) == "fgsm":
        params = {"step_size": attack_cfg.step_size, "bn": attack_cfg.bn, "precision": attack_cfg.precision}
    else:
        params.update(select="last", step_rule=attack_cfg.step_rule, step_schedule=attack_cfg.step_schedule)
    return attack_registry.build(attack_cfg.name, attack_cfg.eps if eps is None else eps, attack_cfg.norm, **params)


def eval_attacks(recipe, stadv=None):
    """The attacks of the recipe's final evaluation (`recipe.eval`): every name at every eps.

    Each attack family takes the settings that concern it: PGD `eval.steps`,
    `eval.restarts` and `eval.step_size`; APGD and FAB `eval.apgd_steps` and
    `eval.apgd_restarts`; autoattack `eval.apgd_steps`; Square and autoattack
    `eval.queries`. stAdv does not use eps: it runs once, with its own options
    from the `stadv` dict (its flow bound is `stadv["eps"]`).
    """
    ev = recipe.eval
    attacks = []
    for name in ev.attacks:
        name = attack_registry.canonical(name)
        family = attack_registry.family(name)
        if family == "stadv":
            options = dict(stadv or {})
            attacks.append(attack_registry.build("stadv", options.pop("eps", None), **options))
            continue
        params = {
            "fgsm": {},
            "pgd": {"steps": ev.steps, "restarts": ev.restarts, "step_size": ev.step_size},
            "apgd": {"steps": ev.apgd_steps, "restarts": ev.apgd_restarts},
            "fab": {"steps": ev.apgd_steps, "restarts": ev.apgd_restarts},
            "square": {"queries": ev.queries},
            "autoattack": {"steps": ev.apgd_steps, "queries": ev.queries},
        }[family]
        if family == "autoattack" and name == "autoattack-rand":
            params.pop("queries")
        for eps in recipe.eval_eps:
            attacks.append(attack_registry.build(name, eps, recipe.attack.norm, **params))
    return attacks


def build_classifier(recipe, info):
    """The recipe's classifier, normalising with the dataset's statistics."""
    kwargs = {}
    if recipe.model.width != 1:
        kwargs["width"] = recipe.model.width
    if recipe.model.init != "keras":
        kwargs["init"] = recipe.model.init
    if recipe.model.activation is not None:
        kwargs["activation"] = recipe.model.activation
    m = recipe.model
    # Recipe.validate has refused both for models without a batch_norm factory.
    if m.batch_norm == "mixbn":
        kwargs["batch_norm"] = mixbn.mix_batch_norm(m.bn_branch, synchronized=m.sync_bn)
    elif m.sync_bn:
        kwargs["batch_norm"] = normalization.synchronized_batch_norm
    normalize = recipe.model.normalize
    return models_lib.build(
        recipe.model.name,
        input_shape=info.image_shape,
        num_classes=info.num_classes,
        mean=info.mean if normalize else None,
        std=info.std if normalize else None,
        **kwargs,
    )


def build_optimizer(train_cfg, total_steps):
    """The recipe's optimizer and learning-rate schedule."""
    peak = train_cfg.learning_rate
    if train_cfg.lr_schedule == "constant":
        lr = peak
    elif train_cfg.lr_schedule == "cyclic":
        lr = PiecewiseLinear([0, train_cfg.lr_peak * total_steps, total_steps], [0.0, peak, 0.0])
    elif train_cfg.lr_schedule == "piecewise":
        half, three_q = int(0.5 * total_steps), int(0.75 * total_steps)
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [half, three_q], [peak, peak * 0.1, peak * 0.01]
        )
    else:
        warmup = min(int(round(total_steps * train_cfg.lr_warmup_epochs / train_cfg.epochs)), total_steps - 1)
        lr = (keras.optimizers.schedules.CosineDecay(0.0, total_steps - warmup, warmup_target=peak,
                                                     warmup_steps=warmup)
              if warmup > 0 else keras.optimizers.schedules.CosineDecay(peak, total_steps))
    wd = train_cfg.weight_decay or None
    kwargs = dict(use_ema=True, ema_momentum=float(train_cfg.ema_decay)) if train_cfg.ema_decay else {}
    # tfrobust's subclasses only when an option needs them, so runs without stay plain Keras optimizers.
    lib = keras.optimizers
    if train_cfg.ema_warmup or not train_cfg.decay_batch_norm:
        lib = optimizers_lib
        kwargs.update(ema_warmup=train_cfg.ema_warmup, decay_batch_norm=train_cfg.decay_batch_norm)
    if train_cfg.optimizer == "sgd":
        return lib.SGD(lr, momentum=train_cfg.momentum, nesterov=train_cfg.nesterov, weight_decay=wd, **kwargs)
    if wd:
        return lib.AdamW(lr, weight_decay=wd, **kwargs)
    return lib.Adam(lr, **kwargs)


def build_model(recipe, info, steps_per_epoch):
    """A compiled `AdversarialModel` for the recipe.

    Weights are initialised from `data.seed`, or copied from `train.init_from`.
    """
    keras.utils.set_random_seed(recipe.data.seed)
    t = recipe.train
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(t.precision)
    try:
        # Layers take the policy when they are created; the global one is restored after.
        classifier = build_classifier(recipe, info)
    finally:
        keras.config.set_dtype_policy(previous)
    if t.init_from:
        pretrained, _ = load_classifier(t.init_from)
        classifier.set_weights(pretrained.get_weights())
    standard = t.method in ("standard", "static")
    attack = None if standard else training_attack(recipe.attack)
    val_attack = None
    if t.val_n > 0 and t.val_steps > 0 and recipe.attack.name != "stadv":
        val_attack = attack_registry.build("pgd", recipe.attack.eps, recipe.attack.norm, steps=t.val_steps)
    model = AdversarialModel(
        classifier,
        attack=attack,
        method="standard" if standard else t.method,
        eval_attack=val_attack,
        clean_ratio=t.clean_ratio,
        trades_beta=t.trades_beta,
        trades_init=t.trades_init,
        trades_bn=t.trades_bn,
        eps_warmup_steps=int(round(t.eps_warmup_epochs * steps_per_epoch)),
        attack_branch=recipe.attack.bn_branch,
        generated_label_smoothing=t.generated_label_smoothing,
    )
    optimizer = build_optimizer(t, t.epochs * steps_per_epoch)
    if t.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer)
    return model


def load_classifier(path):
    """The classifier inside a run directory, a `.keras` file or a SavedModel export.

    A model trained in mixed precision is returned computing in float32 (its
    variables are float32 already), so it is evaluated and exported at full
    precision.

    Returns:
        A callable `classifier(x, training=False) -> logits` with
        `output_shape`, and the metadata dict if `path` is an export.
    """
    metadata = None
    if not os.path.exists(path):
        raise FileNotFoundError(f"No run directory, .keras file or exported version at {path}")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        from tfrobust.export import saved_model as export_lib

        metadata = export_lib.load_metadata(path)
        return ExportedClassifier(path), metadata
    if os.path.isdir(path):
        path, note = run_lib.Run(path).find_model()
        if note:
            print(note, file=sys.stderr)
    model = keras.models.load_model(path)
    if isinstance(model, AdversarialModel):
        model = model.classifier
    folding.compute_in_float32(model)
    return model, metadata


class ExportedClassifier:
    """Wraps an exported SavedModel's float32 signature as a differentiable classifier."""

    def __init__(self, path):
        try:
            self._loaded = tf.saved_model.load(path)
        except Exception as e:  # TF raises several types for a damaged or partial SavedModel
            raise ValueError(f"{path} is not a loadable SavedModel ({type(e).__name__}: {str(e)[:200]}).") from None
        self._fn = self._loaded.signatures["serving_default"]
        # What `stores.weights_fingerprint` ties a resumable evaluation to (versions are immutable).
        self.path = os.path.abspath(path)
        spec = self._fn.structured_outputs["logits"]
        self.output_shape = tuple(spec.shape)
        declared = list(self._fn.structured_input_signature[1].values())[0].shape
        if declared.rank is not None:
            self.input_shape = tuple(declared)
        else:  # exports check the shape in the graph and record it in metadata.json
            from tfrobust.export import saved_model as export_lib

            self.input_shape = (None, *export_lib.load_metadata(path)["input"]["shape"])

    def __call__(self, x, training=False):
        del training
        return self._fn(x)["logits"]
