"""A training run's directory: what it holds, how each file is committed, and how its model is found again.

Layout of a run directory:
    .tfrobust-run          marker: tfrobust made this directory (`--fresh` deletes only such directories)
    recipe.json            the recipe it trains
    command.txt, code.txt  one line per command that ran, and the code version that ran it
    checkpoints/state.json the position (finished epochs, steps of the next) and the checkpoint file it names,
                           with that file's SHA-256 and the optimizer's step counter
    checkpoints/ckpt-eE-sS.keras  the full model (weights and optimizer) after E epochs and S steps
    model.keras            the final model, and final.json (its SHA-256), written after it
    history.csv, tensorboard/ ...

Every file is written to a temporary name and renamed into place, and the record that names a file
(state.json, final.json) is written after the file it names, so a process killed at any moment leaves
either the previous consistent state or the new one.
"""

import csv
import glob
import hashlib
import json
import os
import shutil

from tfrobust.faults import kill_point as _kill_point

MARKER = ".tfrobust-run"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
RECIPE_FILE = "recipe.json"
FINAL_RECORD = "final.json"
LEGACY_CHECKPOINT = "last.keras"

class RunError(ValueError):
    """A run directory that cannot be used as asked; the message names the file and the way out."""


def sha256(path):
    """The hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path, what):
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not a valid {what} ({e}). Restart the run with --fresh.") from None


def save_model(model, path, point):
    """Saves `model` to `path` through a temporary file renamed into place; `point` names the kill points."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".tmp-{os.path.basename(path)}")
    model.save(tmp)
    _kill_point(point + ".before_rename")
    os.replace(tmp, path)
    _kill_point(point + ".renamed")


class Run:
    """One training run's directory (see the module docstring for its layout).

    Args:
        directory: the run directory (under MultiWorkerMirroredStrategy, the
            directory this worker writes: `distribute.write_dir`).
    """

    def __init__(self, directory):
        self.directory = directory
        self.checkpoint_dir = os.path.join(directory, CHECKPOINT_DIR)
        self.recipe_path = os.path.join(directory, RECIPE_FILE)
        self.model_path = os.path.join(directory, MODEL_FILE)
        self.state_path = os.path.join(self.checkpoint_dir, STATE_FILE)
        self.final_path = os.path.join(directory, FINAL_RECORD)

    # The directory itself.

    def is_marked(self):
        return os.path.exists(os.path.join(self.directory, MARKER))

    def create(self):
        """Makes the directory if needed and marks it as a tfrobust run."""
        os.makedirs(self.directory, exist_ok=True)
        marker = os.path.join(self.directory, MARKER)
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("A tfrobust training run; `tfrobust train --fresh` may delete this directory.\n")

    def check_clearable(self):
        """Raises RunError unless `clear` may delete the directory (absent, empty, or a marked run)."""
        if not os.path.isdir(self.directory):
            if os.path.exists(self.directory):
                raise RunError(f"--output {self.directory} is a file, not a run directory.")
            return
        entries = sorted(os.listdir(self.directory))
        if entries and not self.is_marked():
            shown = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
            raise RunError(
                f"--fresh refuses to delete {self.directory}: it has no {MARKER} file, so tfrobust did not make "
                f"it as a run directory (it holds {shown}). Delete it yourself, or choose another --output.")

    def clear(self, keep=()):
        """Deletes the run directory's contents except the entries in `keep` (used by `--fresh`).

        Refuses (RunError) a directory that tfrobust did not make. A
        multi-worker chief keeps `workers/`: the other workers clear and
        refill their own directories there at the same time.
        """
        self.check_clearable()
        if not os.path.isdir(self.directory):
            return
        for entry in os.listdir(self.directory):
            if entry in keep or entry == MARKER:
                continue
            path = os.path.join(self.directory, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def record_command(self, command, code):
        """Appends the command that runs now, and the code version running it, to command.txt and code.txt."""
        for name, line in (("command.txt", command), ("code.txt", code)):
            with open(os.path.join(self.directory, name), "a") as f:
                f.write(line + "\n")

    # Checkpoints.

    def state(self):
        """The checkpoint state (a dict), or None before the first checkpoint."""
        if not os.path.exists(self.state_path):
            return None
        state = _read_json(self.state_path, "checkpoint state")
        if not isinstance(state.get("epochs_done"), int) or not isinstance(state.get("step", 0), int):
            raise RunError(f"{self.state_path} is not a valid checkpoint state (no epochs_done/step). "
                           "Restart the run with --fresh.")
        return state

    def position(self):
        """(finished epochs, finished steps of the next epoch), or (0, 0)."""
        state = self.state()
        return (0, 0) if state is None else (state["epochs_done"], state.get("step", 0))

    def checkpoint_file(self, state=None):
        state = state or self.state()
        return os.path.join(self.checkpoint_dir, state.get("file", LEGACY_CHECKPOINT))

    def save_checkpoint(self, model, epochs_done, step, logs=None):
        """Commits the model (weights and optimizer) and the position as one unit.

        The model goes to a new file named by its optimizer step; state.json,
        which names that file with its hash, is renamed into place after it;
        older checkpoint files are removed last.
        """
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        iterations = int(model.optimizer.iterations.numpy())
        # Named by position, not optimizer step: mixed_float16 skips steps without counting them.
        name = f"ckpt-e{int(epochs_done)}-s{int(step)}.keras"
        path = os.path.join(self.checkpoint_dir, name)
        save_model(model, path, "checkpoint")
        state = {"epochs_done": int(epochs_done), "step": int(step), "iterations": iterations, "file": name,
                 "sha256": sha256(path), "logs": {k: float(v) for k, v in (logs or {}).items()}}
        _write_json(self.state_path, state)
        _kill_point("checkpoint.committed")
        for old in glob.glob(os.path.join(self.checkpoint_dir, "ckpt-*.keras")) + [
                os.path.join(self.checkpoint_dir, LEGACY_CHECKPOINT)]:
            if os.path.basename(old) != name and os.path.exists(old):
                os.remove(old)
        for tmp in glob.glob(os.path.join(self.checkpoint_dir, ".tmp-*")):
            os.remove(tmp)

    def load_checkpoint(self, expected_iterations=None):
        """The checkpointed model, verified against state.json.

        Args:
            expected_iterations: the optimizer step the position implies, for
                checkpoints written before state.json recorded it.

        Raises:
            RunError: the file is missing, does not match its recorded hash, or
                its optimizer has taken another number of steps than the
                position says.
        """
        import keras

        state = self.state()
        path = self.checkpoint_file(state)
        if not os.path.exists(path):
            raise RunError(f"{self.state_path} names {path}, which does not exist. Restart the run with --fresh.")
        if "sha256" in state and sha256(path) != state["sha256"]:
            raise RunError(f"{path} does not match the hash in {self.state_path} (a partial or altered write). "
                           "Restart the run with --fresh.")
        try:
            model = keras.models.load_model(path)
        except Exception as e:  # Keras raises many types for a damaged archive
            raise RunError(f"{path} cannot be loaded ({type(e).__name__}: {str(e)[:200]}). "
                           "Restart the run with --fresh.") from None
        expected = state.get("iterations", expected_iterations)
        if "iterations" not in state and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            expected = None  # it does not count the steps it skips, and old states did not record the count
        got = int(model.optimizer.iterations.numpy())
        if expected is not None and got != expected:
            raise RunError(
                f"{path} holds a model after {got} optimizer steps, but {self.state_path} records "
                f"{state['epochs_done']} epochs and {state.get('step', 0)} steps ({expected} optimizer steps): the "
                "checkpoint and its state disagree, so resuming would train part of the run twice. Restart the run "
                "with --fresh.")
        return model

    # The final model.

    def save_final(self, model):
        """Writes model.keras, then final.json recording its hash."""
        save_model(model, self.model_path, "final")
        _write_json(self.final_path, {"file": MODEL_FILE, "sha256": sha256(self.model_path)})
        _kill_point("final.committed")

    def final_status(self):
        """"ok", "missing" or "corrupt": whether model.keras is there and whole.

        A model.keras without final.json (written before the record existed,
        or killed before it) is whole if Keras can load it.
        """
        if not os.path.exists(self.model_path):
            return "missing"
        if os.path.exists(self.final_path):
            record = _read_json(self.final_path, "final-model record")
            return "ok" if record.get("sha256") == sha256(self.model_path) else "corrupt"
        import keras

        try:
            keras.models.load_model(self.model_path)
        except Exception:  # noqa: BLE001 - any failure to load means the file is not whole
            return "corrupt"
        return "ok"

    def find_model(self):
        """(path, note) of the model that `eval RUN` and `export RUN` use.

        The final model.keras if it is whole; else the last checkpoint, with a
        note saying so (raw weights: not the EMA average a recipe may ask for).

        Raises:
            RunError: neither exists, or model.keras is damaged.
        """
        status = self.final_status()
        if status == "ok":
            return self.model_path, None
        if status == "corrupt":
            raise RunError(f"{self.model_path} is incomplete or damaged. Run the training command again: a finished "
                           "run rewrites it from its last checkpoint.")
        if self.state() is not None and os.path.exists(self.checkpoint_file()):
            epochs, step = self.position()
            where = f"epoch {epochs + 1}, step {step}" if step else f"epoch {epochs}"
            return self.checkpoint_file(), (
                f"Note: {self.directory} has no {MODEL_FILE} (its training has not finished); using its last "
                f"checkpoint, after {where}: the raw weights, not an EMA average.")
        raise RunError(f"No {MODEL_FILE}, checkpoint or saved_model.pb in {self.directory!r}.")


def training_seconds(directory):
    """A run's training wall time: the sum of history.csv's per-epoch `seconds` (over every resume), or None."""
    path = os.path.join(directory if os.path.isdir(directory) else os.path.dirname(directory), "history.csv")
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        return round(sum(float(r["seconds"]) for r in rows), 1)
    except (OSError, KeyError, ValueError):
        return None


def trained_with(model_path, metadata=None):
    """{"trained_with": the run's recipe.json, "train_command": [...]}, as far as they are known for a model.

    Only the run's own recipe.json (or an export's copy of it) counts: a recipe
    given for an evaluation describes the evaluation, not the training, and
    would claim a seed the model may not have had.

    Args:
      model_path: a run directory or a .keras file.
      metadata: an exported version's metadata.json, for an export.
    """
    if metadata is not None:
        return {k: metadata[k] for k in ("trained_with", "train_command") if metadata.get(k)}
    run = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    if not os.path.isdir(model_path) and os.path.basename(model_path) != MODEL_FILE:
        return {}  # another .keras file: nothing says it is the run's model
    out = {}
    if os.path.exists(os.path.join(run, RECIPE_FILE)):
        with open(os.path.join(run, RECIPE_FILE)) as f:
            out["trained_with"] = json.load(f)
    commands = train_commands(run)
    if commands:
        out["train_command"] = commands
    return out


def train_commands(run, _depth=0):
    """The commands that trained the run directory `run`, oldest first.

    A run that started from another run's model (`train.init_from`) owes its
    weights to that run too, so that run's commands come first, recursively.
    A command is a line of the run's `command.txt` (a resumed run adds one).
    """
    commands = []
    recipe_file = os.path.join(run, RECIPE_FILE)
    if os.path.exists(recipe_file) and _depth < 16:
        with open(recipe_file) as f:
            init_from = json.load(f).get("train", {}).get("init_from")
        if init_from:
            base = init_from if os.path.isdir(init_from) else os.path.dirname(init_from)
            if base and os.path.abspath(base) != os.path.abspath(run):
                commands += train_commands(base, _depth + 1)
    trained_by = os.path.join(run, "command.txt")
    if os.path.exists(trained_by):
        with open(trained_by) as f:
            commands += [line.strip() for line in f if line.strip()]
    return commands
