"""Wires a `Recipe` into (model, datasets, callbacks) for `model.fit`.

This is the one place that does it; the command line is a thin layer over
these functions, so a Python user can call them directly.
"""

import dataclasses
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust import data as data_lib
from tfrobust import distribute
from tfrobust import jsonfile, validation
from tfrobust import models as models_lib
from tfrobust import run as run_lib
from tfrobust.attacks import base as attack_base
from tfrobust.attacks import registry as attack_registry
from tfrobust.config import Recipe
from tfrobust.evaluation import robustness
from tfrobust.evaluation.batch_stats import BatchStatsClassifier
from tfrobust.models import folding, mixbn, normalization
from tfrobust.training import AdversarialModel, static_set
from tfrobust.training import callbacks as callbacks_lib
from tfrobust.training import optimizers as optimizers_lib
from tfrobust.training.adversarial_model import resolve_attack_jit
from tfrobust.training.schedules import PiecewiseLinear

CHECKPOINT_DIR = run_lib.CHECKPOINT_DIR
STATIC_SET_DIR = "adversarial_set"
GENERATED_DIR = "generated"


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


def eval_attacks(recipe, eps_values=None, names=None, steps=None, restarts=None, step_size=None,
                 apgd_steps=None, queries=None, stadv=None):
    """The attacks of the final evaluation: every name at every eps.

    Each attack family takes the options that concern it: PGD `steps`,
    `restarts` and `step_size`; APGD, FAB and autoattack `apgd_steps` (and
    `restarts` for APGD and FAB); Square and autoattack `queries`. stAdv does not use
    `eps`: it runs once, with its own options from the `stadv` dict (its flow
    bound is `stadv["eps"]`).
    """
    ev = recipe.eval
    norm = recipe.attack.norm
    # Options given are checked, options left None take the recipe's value: 0 is an error, not "the default".
    steps = ev.steps if steps is None else validation.check_int("steps", steps, minimum=1)
    restarts_given = restarts is not None
    restarts = ev.restarts if restarts is None else validation.check_int("restarts", restarts, minimum=1)
    step_size = ev.step_size if step_size is None else validation.check_number("step_size", step_size, 0.0, False)
    apgd_steps = ev.apgd_steps if apgd_steps is None else validation.check_int("apgd_steps", apgd_steps, minimum=1)
    queries = ev.queries if queries is None else validation.check_int("queries", queries, minimum=1)
    if eps_values is not None:
        eps_values = tuple(validation.check_number("eps_values", e, 0.0, False) for e in eps_values)
        if not eps_values:
            raise ValueError("eps_values must hold at least one radius, or be None for the recipe's. "
                             "Received: eps_values=()")
    attacks = []
    for name in ev.attacks if names is None else names:
        name = attack_registry.canonical(name)
        family = attack_registry.family(name)
        if family == "stadv":
            options = dict(stadv or {})
            attacks.append(attack_registry.build("stadv", options.pop("eps", None), **options))
            continue
        params = {
            "fgsm": {},
            "pgd": {"steps": steps, "restarts": restarts, "step_size": step_size},
            # APGD restarts only when asked: the recipe's eval.restarts are PGD's.
            "apgd": {"steps": apgd_steps, "restarts": restarts if restarts_given else 1},
            "fab": {"steps": apgd_steps, "restarts": restarts if restarts_given else 1},
            "square": {"queries": queries},
            "autoattack": {"steps": apgd_steps, "queries": queries},
        }[family]
        if family == "autoattack" and name == "autoattack-rand":
            params.pop("queries")
        for eps in recipe.eval_eps if eps_values is None else eps_values:
            attacks.append(attack_registry.build(name, eps, norm, **params))
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


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    model: AdversarialModel
    history: dict
    output_dir: str  # where this process wrote: a worker's own directory on a multi-worker non-chief
    train_source: str
    seconds: float


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the full model (weights and optimizer) and the position after each epoch.

    With `every > 0` it also saves every `every` steps inside an epoch. The
    model and the position are committed as one unit (`run.Run.save_checkpoint`),
    so a run killed at any moment leaves the previous checkpoint intact. Because every seed and
    the data order are stateless functions of (seed, epoch, index), a resumed
    run sees exactly the data an uninterrupted run would, from the saved step on.

    Args:
        directory: the run directory (`run.Run` commits each checkpoint).
        every: steps between mid-epoch checkpoints; 0 for epoch ends only.
        steps_per_epoch: the full epoch's length.
        first_step: the step the first epoch of this `fit` starts at (a run
            resumed mid-epoch fits the rest of that epoch first).
    """

    def __init__(self, directory, every=0, steps_per_epoch=None, first_step=0):
        super().__init__()
        self.run, self.every = run_lib.Run(directory), int(every)
        self.steps_per_epoch, self.offset = steps_per_epoch, int(first_step)
        self.epoch = 0

    def _save(self, epochs_done, step, logs):
        self.run.save_checkpoint(self.model, epochs_done, step, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1 + self.offset
        if self.every and step % self.every == 0 and step < self.steps_per_epoch:
            self._save(self.epoch, step, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        self._save(epoch + 1, 0, logs)


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time to its logs: `seconds` in all, `validation_seconds` of it validating.

    It must come before the callbacks that write logs (CSVLogger, TensorBoard),
    so that history.csv records how long every epoch took: the figure needed
    to plan runs, and to see that a change of recipe did not cost more than
    intended. A run resumed mid-epoch times the rest of that epoch only.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._validation = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._validation += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start
            logs["validation_seconds"] = self._validation


def static_training_set(recipe, images, labels, output_dir, info, verbose="auto"):
    """The 1:1 clean + adversarial set of a "static" run, generating what is missing.

    The adversarial examples of `train.init_from` under the recipe's attack are
    stored under `output_dir/adversarial_set/`, batch by batch; an interrupted
    generation resumes (`training.static_set.generate`).
    """
    pretrained, _ = load_classifier(recipe.train.init_from)
    attack = training_attack(recipe.attack)
    print(f"Adversarial set: {recipe.attack.name} on {recipe.train.init_from}", file=sys.stderr)
    adversarial = static_set.generate(pretrained, images, labels, attack,
                                      os.path.join(output_dir, STATIC_SET_DIR), seed=recipe.data.seed,
                                      verbose=verbose)
    return static_set.augmented(images, labels, adversarial)


def generated_training_set(recipe, images, labels, info, output_dir, verbose="auto"):
    """The generated images and labels a recipe mixes in, made or labelled as needed.

    "gaussian" fits `data.generated.ClassConditionalGaussian` to the training
    images and samples `data.generated_n` images once, cached as
    `output_dir/generated/gaussian.npz`. With `data.teacher`, the set is
    pseudo-labelled (resumably, under `output_dir/generated/pseudo_labels/`)
    and the teacher's clean test accuracy is written to
    `output_dir/generated/teacher.json`.

    Returns:
        (images uint8, labels int64, description).
    """
    from tfrobust.data import generated as generated_lib

    d = recipe.data
    directory = os.path.join(output_dir, GENERATED_DIR)
    os.makedirs(directory, exist_ok=True)
    if d.generated == "gaussian":
        cached = os.path.join(directory, "gaussian.npz")
        if not os.path.exists(cached):
            print(f"Fitting a class-conditional Gaussian to {len(labels)} images; sampling {d.generated_n}.",
                  file=sys.stderr)
            model = generated_lib.ClassConditionalGaussian().fit(images, labels, info.num_classes)
            gen_images, gen_labels = model.sample(d.generated_n, seed=d.seed)
            generated_lib.save(cached + ".tmp.npz", gen_images, gen_labels)
            os.replace(cached + ".tmp.npz", cached)
        gen_images, gen_labels = generated_lib.load(cached, info.image_shape, info.num_classes)
        description = "class-conditional Gaussian samples"
    else:
        gen_images, gen_labels = generated_lib.load(d.generated, info.image_shape, info.num_classes,
                                                    require_labels=d.teacher is None)
        description = d.generated
    if d.teacher:
        teacher, _ = load_classifier(d.teacher)
        gen_labels, confidence = generated_lib.pseudo_label(
            teacher, gen_images, os.path.join(directory, "pseudo_labels"), verbose=verbose)
        test = data_lib.load(d.dataset, "test", data_dir=d.data_dir)
        predicted, _ = generated_lib.pseudo_label(teacher, test.images, verbose=0)
        report = {"teacher": d.teacher, "test_accuracy": float(np.mean(predicted == test.labels)),
                  "test_n": int(len(test.labels)), "mean_confidence": float(np.mean(confidence)),
                  "label_counts": np.bincount(gen_labels, minlength=info.num_classes).tolist()}
        jsonfile.write(os.path.join(directory, "teacher.json"), report)
        print(f"Teacher {d.teacher}: clean test accuracy {100 * report['test_accuracy']:.2f}% "
              f"on {report['test_n']} images; pseudo-labelled {len(gen_labels)} generated images.",
              file=sys.stderr)
        description += f", pseudo-labelled by {d.teacher}"
    return gen_images, gen_labels, description


def resume_position(output_dir):
    """(finished epochs, finished steps of the next epoch) recorded in `output_dir`, or (0, 0)."""
    return run_lib.Run(output_dir).position()


def resume_state(output_dir):
    """The number of finished epochs recorded in `output_dir`, or 0."""
    return resume_position(output_dir)[0]


#: Recipe keys a resumed run may change: they do not alter what was trained so far.
RESUMABLE_CHANGES = ("name", "description", "eval", "data.data_dir", "train.epochs", "train.checkpoint_every")


def check_resumable(recipe_path, recipe):
    """Raises ValueError if the run at `recipe_path` was trained with a recipe that differs from `recipe`.

    A checkpoint carries its learning-rate schedule, EMA decay and warm-up,
    while the data position would follow the new recipe: resuming across a
    change would silently mix two runs. Only `RESUMABLE_CHANGES` may differ
    (more epochs, another data directory, the evaluation settings).
    """
    if not os.path.exists(recipe_path):
        return
    with open(recipe_path) as f:
        old = Recipe.from_dict(json.load(f)).to_dict()
    new = recipe.to_dict()

    def flat(d):
        out = {}
        for key, value in d.items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    old, new = flat(old), flat(new)
    changed = [k for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k) and not {k, k.split(".")[0]} & set(RESUMABLE_CHANGES)]
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(
            f"{os.path.dirname(recipe_path)} holds a run of a different recipe ({diff}). Resume it with "
            f"its own recipe ({recipe_path}), or start again with --fresh (train(..., resume=False)).")


def train(recipe, output_dir, verbose="auto", resume=True, strategy=None, fresh=False, command=None):
    """Trains the recipe's model with `model.fit`, resuming from `output_dir` if it can.

    Writes into `output_dir` (`tfrobust.run` describes the layout and how each
    file is committed): `recipe.json`, the command and code records, a
    checkpoint after every epoch, `history.csv`, TensorBoard logs under
    `tensorboard/`, and the final `model.keras`. Under
    MultiWorkerMirroredStrategy only the chief writes there; every other
    worker writes the same files into its own directory under `output_dir/workers/`
    (`distribute.write_dir`) and resumes from it; workers checkpoint at the same
    steps, so restarting them all resumes them at the same position.

    Args:
        recipe: a `Recipe`.
        output_dir: the run's directory.
        verbose: Keras' verbosity; "auto" shows a progress bar on a terminal
            and one line per epoch otherwise.
        resume: continue from the last finished epoch if a checkpoint exists.
        strategy: a `tf.distribute.Strategy`; None picks one with
            `distribute.get_strategy("auto")`.
        fresh: start again: once the recipe, the data and the model have
            been checked, delete what `output_dir` holds (only if tfrobust made
            it as a run directory; `run.RunError` otherwise, before anything is
            loaded).
        command: the command line to record in `command.txt` (the CLI's);
            None records the Python call.

    Returns:
        A `TrainResult`.
    """
    start = time.time()
    strategy = strategy or distribute.get_strategy("auto")
    # Under MultiWorkerMirroredStrategy only the chief writes `output_dir`.
    output_dir = distribute.write_dir(output_dir, strategy)
    if not distribute.is_chief(strategy):
        verbose = 0
    run = run_lib.Run(output_dir)
    if fresh:
        run.check_clearable()  # before minutes of loading
        resume = False
    if resume and run.position() != (0, 0):
        check_resumable(run.recipe_path, recipe)

    d, t = recipe.data, recipe.train
    data, info = _prepare(recipe, run, strategy, fresh, command)

    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    done, done_steps = run.position() if resume else (0, 0)
    guard_tripped = t.overfit_guard and callbacks_lib.read_state(run.checkpoint_dir)["tripped_at"] is not None
    with strategy.scope():
        if done > 0 or done_steps > 0:
            model = run.load_checkpoint(expected_iterations=done * data.steps + done_steps)
        else:
            model = build_model(recipe, info, data.steps)
    if guard_tripped:
        return TrainResult(_guarded_model(model, run), {}, output_dir, data.source, time.time() - start)
    if done >= t.epochs:
        # The checkpoint holds the raw weights; a finished run's model is the average.
        model.optimizer.finalize_variable_values(model.trainable_weights)
        status = run.final_status()
        if status != "ok":
            print(f"{run.model_path} is {status}: writing it again from the last checkpoint.", file=sys.stderr)
            run.save_final(model)
        return TrainResult(model, {}, output_dir, data.source, time.time() - start)
    if done > 0 or done_steps > 0:
        where = f"step {done_steps} of epoch {done + 1}" if done_steps else f"epoch {done}"
        print(f"Resuming {output_dir} after {where} of {t.epochs}.", file=sys.stderr)
    if verbose:
        _note_unsynchronized_bn(model, strategy, d.batch_size)
    callbacks, guard = _callbacks(recipe, run, data, done, done_steps)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    history = _fit(model, data, callbacks, guard, done, done_steps, t.epochs, verbose)
    if guard and guard.tripped is not None:
        model = _guarded_model(model, run)
    else:
        run.save_final(model)
    return TrainResult(model, history, output_dir, data.source, time.time() - start)


def _note_unsynchronized_bn(model, strategy, batch_size):
    unsynchronized = any(not layer.synchronized for layer in normalization.batch_norm_layers(model.classifier))
    if strategy.num_replicas_in_sync > 1 and unsynchronized:
        print(f"Note: BatchNorm is not synchronised, so each of the {strategy.num_replicas_in_sync} replicas "
              f"normalises its own {batch_size // strategy.num_replicas_in_sync} examples of each batch; "
              "model.sync_bn=true trains as one device would on the whole batch.", file=sys.stderr)


def _prepare(recipe, run, strategy, fresh, command):
    """Loads the training split, checks what would fail later, clears a `fresh` run, records the command,
    and builds the run's training data (stored adversarial and generated parts included)."""
    d, t, m = recipe.data, recipe.train, recipe.model
    split = data_lib.load(d.dataset, "train", data_dir=d.data_dir)
    images, labels = split.images, split.labels
    source = split.source
    if d.n_train is not None and d.n_train < len(labels):
        images, labels = images[: d.n_train], labels[: d.n_train]
        source += f"; first {d.n_train} examples"
    # The attack would be refused when its first step is traced, after the generated set (minutes, with a teacher).
    # build_model leaves AdversarialModel's attack_jit at "auto".
    if (m.sync_bn and t.method not in ("standard", "static") and training_attack(recipe.attack).bn == "batch_stats"
            and attack_base.strategy_merges(strategy, xla=resolve_attack_jit("auto"))):
        attack_base.refuse_synchronized_batch_stats(build_classifier(recipe, split.info), strategy)
    if fresh:
        build_classifier(recipe, split.info)  # a model that does not build must not cost the old run
        run.clear(keep=("workers",) if distribute.is_chief(strategy) else ())
    _start_run(run, recipe, command)
    return _TrainingData(recipe, images, labels, source, split.info, run.directory), split.info


class _TrainingData:
    """A run's training set (real, stored adversarial and generated parts), its pipelines and epoch length."""

    def __init__(self, recipe, images, labels, source, info, output_dir):
        d, t = recipe.data, recipe.train
        self.recipe = recipe
        if t.method == "static":
            images, labels = static_training_set(recipe, images, labels, output_dir, info)
            source += f"; plus one stored {recipe.attack.name} example per image ({STATIC_SET_DIR}/)"
        self.generated = None
        real_batches = data_lib.steps_per_epoch(len(labels), d.batch_size // d.repeats)
        self.steps_per_pass = real_batches
        if d.generated and d.generated_fraction > 0:
            self.generated = generated_training_set(recipe, images, labels, info, output_dir)
            source += (f"; {100 * d.generated_fraction:g}% of each batch from {self.generated[2]} "
                       f"({len(self.generated[1])} images)")
            self.steps_per_pass = data_lib.pipelines.mixed_steps_per_epoch(
                len(labels), len(self.generated[1]), d.batch_size, d.generated_fraction, d.repeats)
        self.images, self.labels, self.source = images, labels, source
        # The pipelines count in passes over their data; a run's epochs may not.
        self.steps = t.steps_per_epoch or (real_batches if t.epoch_length == "real_batches" else self.steps_per_pass)
        # In-memory pipelines have no files to shard: workers split each global
        # batch by element instead (the examples carry their own seeds, so the
        # split does not change what each example sees).
        self.options = tf.data.Options()
        self.options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def train(self, start_epoch, start_step=0):
        """The training pipeline from a run's position (epoch, step) on."""
        d = self.recipe.data
        augment = dict(augment=d.augment, pad=d.pad, flip=d.flip, cutout=d.cutout, repeats=d.repeats)
        start_epoch, start_step = divmod(start_epoch * self.steps + start_step, self.steps_per_pass)
        if self.generated is None:
            ds = data_lib.train_dataset(self.images, self.labels, batch_size=d.batch_size, seed=d.seed,
                                        start_epoch=start_epoch, start_step=start_step, **augment)
        else:
            ds = data_lib.pipelines.mixed_train_dataset(
                self.images, self.labels, self.generated[0], self.generated[1], batch_size=d.batch_size,
                generated_fraction=d.generated_fraction, seed=d.seed, start_epoch=start_epoch,
                start_step=start_step, **augment)
        return ds.with_options(self.options)

    def validation(self):
        """The validation pipeline (the first `train.val_n` test images), or None."""
        d, t = self.recipe.data, self.recipe.train
        if t.val_n <= 0:
            return None
        test = data_lib.load(d.dataset, "test", data_dir=d.data_dir)
        return data_lib.eval_dataset(test.images, test.labels, batch_size=500, seed=d.seed,
                                     n=t.val_n).with_options(self.options)


def _callbacks(recipe, run, data, done, done_steps):
    """The training callbacks (timer, checkpoint, CSV, TensorBoard, overfitting guard, EMA) and the guard."""
    t, output_dir = recipe.train, run.directory
    checkpoint = EpochCheckpoint(output_dir, t.checkpoint_every, data.steps, done_steps)
    history_csv, append = os.path.join(output_dir, "history.csv"), done > 0 or done_steps > 0
    # A run begun before the timer existed keeps its columns: CSVLogger appends without a new header.
    timed = not (append and os.path.exists(history_csv)
                 and "seconds" not in open(history_csv).readline().strip().split(","))
    callbacks = [
        EpochTimer(),
        checkpoint,
        keras.callbacks.CSVLogger(history_csv, append=append),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard"), update_freq="epoch"),
    ][0 if timed else 1:]
    guard = None
    if t.overfit_guard:
        eps = recipe.attack.eps
        guard_attack = attack_registry.build("pgd", eps, recipe.attack.norm, steps=t.overfit_guard,
                                             step_size=eps / 4, restarts=1)
        guard = callbacks_lib.OverfitGuard(guard_attack, callbacks_lib.first_batch_fn(data.train),
                                           run.checkpoint_dir, drop=t.overfit_guard_drop)
        # Before the checkpoint: a tripped epoch must not be recorded as trained on.
        callbacks.insert(callbacks.index(checkpoint), guard)
    if t.ema_decay:
        # Validation sees the averaged weights; fit() ends by writing the
        # average into the model, which is then saved as model.keras.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights())
    return callbacks, guard


def _fit(model, data, callbacks, guard, done, done_steps, epochs, verbose):
    """`model.fit` from the run's position to `epochs`; returns the history of what ran."""
    fit = dict(validation_data=data.validation(), callbacks=callbacks, verbose=verbose,
               shuffle=False)  # the pipeline already shuffles, statelessly per epoch
    history = {}
    if done_steps:
        # Keras restarts an epoch at batch 0, so the rest of a partly done epoch is a fit of its own.
        part = model.fit(data.train(done, done_steps), epochs=done + 1, initial_epoch=done,
                         steps_per_epoch=data.steps - done_steps, **fit)
        history = dict(part.history)
        done += 1
        for c in callbacks:
            if isinstance(c, keras.callbacks.CSVLogger):
                c.append = True  # the second fit continues the same history file
    if done < epochs and not (guard and guard.tripped is not None):
        rest = model.fit(data.train(done), epochs=epochs, initial_epoch=done, steps_per_epoch=data.steps, **fit)
        for key, values in rest.history.items():
            history[key] = history.get(key, []) + list(values)
    return history


def _start_run(run, recipe, command):
    """Marks the run directory and records the recipe, the command and the code that run now."""
    from tfrobust.version import code_version

    run.create()
    jsonfile.write(run.recipe_path, recipe.to_dict())
    run.record_command(command or f"(Python) tfrobust.experiment.train(<recipe {recipe.name}>)", code_version())


def _guarded_model(model, run):
    """The run's final model when the overfitting guard stopped it: the last epoch that passed, saved as model.keras."""
    state = callbacks_lib.read_state(run.checkpoint_dir)
    kept = os.path.join(run.checkpoint_dir, callbacks_lib.GUARD_MODEL)
    if not os.path.exists(kept):
        raise ValueError(f"The overfitting guard stopped this run in its first epoch ({run.checkpoint_dir}/"
                         f"{callbacks_lib.GUARD_STATE}), so no earlier weights exist to keep; rerun with "
                         "--set train.overfit_guard=0 or another recipe.")
    model.set_weights(keras.models.load_model(kept).get_weights())
    if run.final_status() != "ok":
        run.save_final(model)
    print(f"Kept the weights of epoch {state['tripped_at']} (the overfitting guard tripped after epoch "
          f"{state['tripped_at'] + 1}).", file=sys.stderr)
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


def evaluate(classifier, recipe, *, n=None, eps_values=None, attack_names=None, data_dir=None,
             steps=None, restarts=None, step_size=None, apgd_steps=None, queries=None, stadv=None,
             batch_size=None, verbose="auto", strategy=None, state_dir=None, checks=None, bn=None):
    """Evaluates a classifier on the first n test examples under the recipe's attacks.

    Arguments left None take the recipe's values (`checks`: `recipe.eval.checks`,
    `bn`: `recipe.eval.bn`, "inference" or "batch_stats").

    Returns:
        A `robustness.Report`.
    """
    d = recipe.data
    # Checked before the data and the attacks are built; None takes the recipe's value, 0 is refused.
    n = recipe.eval.n if n is None else validation.check_int("n", n, minimum=1)
    batch_size = recipe.eval.batch_size if batch_size is None else validation.check_int("batch_size", batch_size, 1)
    attacks = eval_attacks(recipe, eps_values, attack_names, steps, restarts, step_size,
                           apgd_steps, queries, stadv)
    test = data_lib.load(d.dataset, "test", data_dir=d.data_dir if data_dir is None else data_dir)
    if not len(test.labels):
        raise ValueError(f"The {d.dataset} test split from {test.source} is empty: there is nothing to evaluate.")
    n = min(n, len(test.labels))
    source = f"{test.source}; first {n} test examples"
    if (bn or recipe.eval.bn) == "batch_stats":
        classifier = BatchStatsClassifier(classifier)
        source += f"; BatchNorm with batch statistics, batches of {batch_size}"
    return robustness.evaluate(
        classifier,
        test.images[:n],
        test.labels[:n],
        attacks,
        batch_size=batch_size,
        seed=d.seed,
        verbose=verbose,
        source=source,
        strategy=strategy,
        state_dir=state_dir,
        checks=recipe.eval.checks if checks is None else checks,
    )


def export_metadata(recipe, report, extra=None):
    """The metadata.json contents for an export: every figure comes from `report`.

    With `report=None` (an export before its evaluation) there is no `metrics` key.
    """
    if report is None:
        md = {"recipe": recipe.name, "dataset": recipe.data.dataset,
              "threat_model": {"norm": recipe.attack.norm, "eps": float(recipe.attack.eps)},
              "recipe_config": recipe.to_dict()}
        md.update(extra or {})
        return md
    robust = {}
    attacks = {}
    for r in report.results:
        key = r.attack if len(recipe.eval_eps) == 1 else f"{r.attack}@{r.eps:g}"
        robust[key] = r.accuracy
        attacks[key] = r.params
    md = {
        "recipe": recipe.name,
        "dataset": recipe.data.dataset,
        "threat_model": {"norm": recipe.attack.norm, "eps": float(recipe.attack.eps)},
        "metrics": {
            "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": robust,
            "attacks": attacks,
            "n": report.n,
            "data": report.source,
            "warnings": list(report.warnings),
        },
        "recipe_config": recipe.to_dict(),
    }
    md.update(extra or {})
    return md


def export(classifier, recipe, report, base_dir="saved_models", name=None, extra=None):
    """Exports a SavedModel to `base_dir/<name>/<next version>/` with metadata.json."""
    from tfrobust.export import saved_model as export_lib

    info = data_lib.info(recipe.data.dataset)
    name = name or f"{recipe.data.dataset}_{recipe.train.method}_{recipe.attack.norm}"
    return export_lib.export_saved_model(
        classifier,
        base_dir,
        name,
        metadata=export_metadata(recipe, report, extra),
        class_names=list(info.class_names) if info.class_names else None,
    )


# metadata.json keys that export_saved_model writes itself.
_EXPORT_OWN_KEYS = ("name", "version", "input", "signatures", "created", "class_names", "bn_branch", "tfrobust_version")


def rebuild_classifier(version_dir, n=None, data_dir=None, batch_size=500, images=None):
    """The Keras classifier inside an exported version, rebuilt so that it can be exported again.

    The classifier is built from the recipe in the version's metadata.json,
    given the SavedModel's own variables, and must reproduce the SavedModel's
    logits within 1e-4 on the check images: `images` if given, else the
    first `n` test images (all by default).

    Args:
        version_dir: an exported version directory, `NAME/VERSION`.
        n: test images for the logit check (default: the whole test split).
        data_dir: directory with the dataset's npz files or prepared TFDS data.
        batch_size: batch size of the check.
        images: optional uint8 or float32 [0, 1] images `[N, H, W, C]` for the
            check instead of the test split (no data needed).

    Returns:
        (classifier, recipe, metadata dict, check dict `{"n", "max_abs_difference"}`).

    Raises:
        ValueError: no recipe in the metadata, or the rebuilt classifier's
            variables or logits differ from the SavedModel's.
    """
    from tfrobust.export import saved_model as export_lib

    md = export_lib.load_metadata(version_dir)
    if "recipe_config" not in md:
        raise ValueError(f"{version_dir}/metadata.json has no recipe_config: the classifier cannot be rebuilt.")
    recipe = Recipe.from_dict(md["recipe_config"])
    classifier = build_classifier(recipe, data_lib.info(recipe.data.dataset))
    loaded = tf.saved_model.load(version_dir)
    saved = {v.name.split(":")[0]: v for v in loaded.variables}
    wanted = {v.path: v for v in classifier.variables}
    if set(saved) != set(wanted):
        raise ValueError(f"{version_dir}: the SavedModel's variables do not match the recipe's classifier "
                         f"(only saved: {sorted(set(saved) - set(wanted))[:5]}, only rebuilt: "
                         f"{sorted(set(wanted) - set(saved))[:5]}).")
    for path, variable in wanted.items():
        if tuple(variable.shape) != tuple(saved[path].shape):
            raise ValueError(f"{version_dir}: variable {path} has shape {tuple(saved[path].shape)} in the SavedModel "
                             f"and {tuple(variable.shape)} in the recipe's classifier.")
        variable.assign(saved[path])
    if images is None:
        test = data_lib.load(recipe.data.dataset, "test", data_dir=data_dir)
        images = test.images[:n] if n else test.images
    old = loaded.signatures["serving_default"]
    worst = 0.0
    for i in range(0, len(images), batch_size):
        x = tf.constant(images[i:i + batch_size])
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 255.0
        diff = tf.reduce_max(tf.abs(old(images=x)["logits"] - tf.cast(classifier(x, training=False), tf.float32)))
        worst = max(worst, float(diff))
    if worst > 1e-4:
        raise ValueError(f"{version_dir}: the rebuilt classifier's logits differ from the SavedModel's by {worst:.3g} "
                         "(more than 1e-4).")
    return classifier, recipe, md, {"n": len(images), "max_abs_difference": worst}


def carried_metadata(md, check):
    """An exported version's metadata for its next export: all but the keys the export writes,
    plus `reexported_from` (the source version and `rebuild_classifier`'s check)."""
    metadata = {k: v for k, v in md.items() if k not in _EXPORT_OWN_KEYS}
    metadata["reexported_from"] = {"name": md.get("name"), "version": md.get("version"),
                                   "created": md.get("created"), "tfrobust_version": md.get("tfrobust_version"),
                                   "logit_check": check}
    return metadata


def clear_run(output_dir, keep=()):
    """Deletes a run directory's contents except the entries in `keep`; see `run.Run.clear` (refuses
    directories tfrobust did not make)."""
    run_lib.Run(output_dir).clear(keep)
