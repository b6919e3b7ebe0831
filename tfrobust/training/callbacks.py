"""Keras callbacks that training runs use beyond Keras' own."""

import json
import os
import time

import keras
import numpy as np

from tfrobust import progress

GUARD_STATE = "overfit_guard.json"
GUARD_MODEL = "overfit_guard.keras"


class OverfitGuard(keras.callbacks.Callback):
    """Wong et al.'s early stop against catastrophic overfitting.

    Wong, Rice & Kolter, "Fast is better than free: revisiting adversarial
    training", arXiv 2001.03994, Section 5.3 (and `train_fgsm.py --early-stop`
    in their code): after every epoch a PGD attack runs on the epoch's first
    training batch; if its robust accuracy falls by more than `drop` from the
    previous epoch's, training stops and the weights kept are those of the
    previous epoch. Their check runs the model in train mode; this one uses
    BatchNorm's moving statistics, the mode the kept model is evaluated in.

    State lives in `directory`: `overfit_guard.json` (each checked epoch's
    robust accuracy, and the epoch that tripped the guard, if one did) and
    `overfit_guard.keras` (the model after the last epoch that passed). Both are
    written to temporary names and renamed into place, the model first, so a
    run killed at any moment and resumed with the same data sees the same
    decisions. The guard must come before the callback that checkpoints the
    epoch, so that a tripped run is never recorded as having gone on.

    Args:
        attack: the PGD attack, called as `attack(classifier, x, y, seeds)`.
        first_batch: `epoch -> batch`, the epoch's first training batch as the
            model's `train_step` receives it.
        directory: where the state is kept (the run's checkpoint directory).
        drop: the fall in robust accuracy, a share in (0, 1], that stops training.
    """

    def __init__(self, attack, first_batch, directory, drop=0.2):
        super().__init__()
        self.attack, self.first_batch, self.directory, self.drop = attack, first_batch, directory, float(drop)
        self.state = read_state(directory)

    @property
    def tripped(self):
        """The epoch (0-based) whose check stopped training, or None."""
        return self.state.get("tripped_at")

    def _robust_accuracy(self, epoch):
        x, y, seeds = self.model._unpack(self.first_batch(epoch))
        classifier = self.model.classifier
        x_adv = self.attack(classifier, x, y, seeds)
        predictions = np.argmax(np.asarray(classifier(x_adv, training=False)), axis=-1)
        return float(np.mean(predictions == np.asarray(y)))

    def on_epoch_end(self, epoch, logs=None):
        accuracy = self._robust_accuracy(epoch)
        if logs is not None:
            logs["guard_robust_accuracy"] = accuracy
        previous = self.state["robust_accuracy"].get(str(epoch - 1), 0.0)
        self.state["robust_accuracy"][str(epoch)] = accuracy
        if accuracy - previous < -self.drop:
            self.state["tripped_at"] = epoch
            self.model.stop_training = True
            print(f"Catastrophic overfitting guard: robust accuracy on the first training batch fell from "
                  f"{previous:.3f} (epoch {epoch}) to {accuracy:.3f} (epoch {epoch + 1}); training stops and "
                  f"keeps the weights of epoch {epoch}.", flush=True)
        else:
            os.makedirs(self.directory, exist_ok=True)
            tmp = os.path.join(self.directory, ".overfit_guard.tmp.keras")
            self.model.save(tmp)
            os.replace(tmp, os.path.join(self.directory, GUARD_MODEL))
        write_state(self.directory, self.state)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the full model (weights and optimizer) and the position after each epoch.

    With `every > 0` it also saves every `every` steps inside an epoch. The
    model and the position are committed as one unit by `save`
    (`run.Run.save_checkpoint`), so a run killed at any moment leaves the
    previous checkpoint intact. Because every seed and
    the data order are stateless functions of (seed, epoch, index), a resumed
    run sees exactly the data an uninterrupted run would, from the saved step on.

    Args:
        save: `save(model, epochs_done, step, logs)` commits one checkpoint
            (a run's `run.Run.save_checkpoint`).
        every: steps between mid-epoch checkpoints; 0 for epoch ends only.
        steps_per_epoch: the full epoch's length.
        first_step: the step the first epoch of this `fit` starts at (a run
            resumed mid-epoch fits the rest of that epoch first).
    """

    def __init__(self, save, every=0, steps_per_epoch=None, first_step=0):
        super().__init__()
        self.save, self.every = save, int(every)
        self.steps_per_epoch, self.offset = steps_per_epoch, int(first_step)
        self.epoch = 0

    def _save(self, epochs_done, step, logs):
        self.save(self.model, epochs_done, step, logs)

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


class EpochProgress(keras.callbacks.Callback):
    """Reports the batches of each epoch as it runs, for output that goes to a pipe or a file.

    Keras' line mode (`verbose=2`) prints one line per finished epoch, so a
    job under nohup or `| tee` shows nothing for the length of an epoch (an
    hour on a large model). This prints `tfrobust.progress` lines every
    `interval` seconds instead: `[epoch 3/15] 120/390 batches, 2m10s
    elapsed, ETA 5m28s`.

    Args:
        epochs: the run's number of epochs.
        steps_per_epoch: the full epoch's length.
        first_step: the step the first epoch of this `fit` starts at (a run
            resumed mid-epoch).
        interval: seconds between lines (default: `progress.DEFAULT_INTERVAL`).
        stream: where lines go (default: standard output).
    """

    def __init__(self, epochs, steps_per_epoch, first_step=0, interval=None, stream=None):
        super().__init__()
        self.epochs, self.steps_per_epoch, self.offset = int(epochs), int(steps_per_epoch), int(first_step)
        self.interval, self.stream = interval, stream
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._bar = progress.Progress(self.steps_per_epoch, f"epoch {epoch + 1}/{self.epochs}", "batch",
                                      done=self.offset, verbose=2, stream=self.stream,
                                      interval=progress.DEFAULT_INTERVAL if self.interval is None else self.interval)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(batch + 1 + self.offset)
            if self._bar.done >= self.steps_per_epoch:
                self._close()  # its "finished" line, once: not again every interval while validation runs

    def on_epoch_end(self, epoch, logs=None):
        self._close()
        self.offset = 0

    def on_train_end(self, logs=None):
        self._close()  # a fit stopped inside an epoch (the overfitting guard) must not leave its thread printing

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def read_state(directory):
    """The guard's state in `directory` (empty if it has none)."""
    path = os.path.join(directory, GUARD_STATE)
    if not os.path.exists(path):
        return {"robust_accuracy": {}, "tripped_at": None}
    try:
        with open(path) as f:
            state = json.load(f)
        state["robust_accuracy"] = {str(k): float(v) for k, v in state["robust_accuracy"].items()}
        state.setdefault("tripped_at", None)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a valid overfitting-guard state ({e}); restart the run with --fresh.")
    return state


def write_state(directory, state):
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, GUARD_STATE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, os.path.join(directory, GUARD_STATE))


def first_batch_fn(dataset_for_epoch):
    """`epoch -> batch`: the first element of `dataset_for_epoch(epoch)`."""

    def first_batch(epoch):
        return next(iter(dataset_for_epoch(epoch).take(1)))

    return first_batch
