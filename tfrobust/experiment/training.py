"""Training a recipe with `model.fit`: the run directory, its data, callbacks, checkpoints and resume."""

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
from tfrobust import jsonfile
from tfrobust import run as run_lib
from tfrobust.attacks import base as attack_base
from tfrobust.attacks import registry as attack_registry
from tfrobust.config import Recipe
from tfrobust.models import normalization
from tfrobust.training import AdversarialModel, static_set
from tfrobust.training import callbacks as callbacks_lib
from tfrobust.training.adversarial_model import resolve_attack_jit
from tfrobust.experiment.building import build_classifier, build_model, load_classifier, training_attack


STATIC_SET_DIR = "adversarial_set"


GENERATED_DIR = "generated"


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    model: AdversarialModel
    history: dict
    output_dir: str  # where this process wrote: a worker's own directory on a multi-worker non-chief
    train_source: str
    seconds: float


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
    and the teacher's clean test accuracy (and, for a labelled set, how often
    it agrees with the set's own labels) is written to
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
        own_labels = gen_labels
        gen_labels, confidence = generated_lib.pseudo_label(
            teacher, gen_images, os.path.join(directory, "pseudo_labels"), verbose=verbose)
        test = data_lib.load(d.dataset, "test", data_dir=d.data_dir)
        predicted, _ = generated_lib.pseudo_label(teacher, test.images, verbose=0)
        report = {"teacher": d.teacher, "test_accuracy": float(np.mean(predicted == test.labels)),
                  "test_n": int(len(test.labels)), "mean_confidence": float(np.mean(confidence)),
                  "label_counts": np.bincount(gen_labels, minlength=info.num_classes).tolist()}
        if own_labels is not None:
            # How often the teacher gives a sample the class it was generated for (Gaussian samples: the class
            # whose Gaussian drew it).
            report["agreement_with_generated_labels"] = float(np.mean(gen_labels == own_labels))
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
        verbose: "auto" shows a progress bar on a terminal, else (or 2) a
            line per epoch and `callbacks.EpochProgress` lines within it.
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
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    callbacks, guard = _callbacks(recipe, run, data, done, done_steps, verbose)
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


def _callbacks(recipe, run, data, done, done_steps, verbose):
    """The training callbacks (timer, checkpoint, CSV, TensorBoard, overfitting guard, EMA, progress lines for
    `verbose` 2) and the guard."""
    t, output_dir = recipe.train, run.directory
    checkpoint = callbacks_lib.EpochCheckpoint(run.save_checkpoint, t.checkpoint_every, data.steps, done_steps)
    history_csv, append = os.path.join(output_dir, "history.csv"), done > 0 or done_steps > 0
    # A run begun before the timer existed keeps its columns: CSVLogger appends without a new header.
    timed = not (append and os.path.exists(history_csv)
                 and "seconds" not in open(history_csv).readline().strip().split(","))
    callbacks = [
        callbacks_lib.EpochTimer(),
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
    if verbose == 2:
        callbacks.append(callbacks_lib.EpochProgress(t.epochs, data.steps, done_steps))
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


def clear_run(output_dir, keep=()):
    """Deletes a run directory's contents except the entries in `keep`; see `run.Run.clear` (refuses
    directories tfrobust did not make)."""
    run_lib.Run(output_dir).clear(keep)
