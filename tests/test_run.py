"""Run directories: what `--fresh` may delete, checkpoints committed as a unit, the final model, kills anywhere."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import helpers
from tests.test_experiment import _kill_recipe, _recipe
from tfrobust import cli
from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust import faults
from tfrobust import run as run_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _weights(model):
    return [w.numpy() for w in model.classifier.weights]


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_fresh_refuses_a_directory_tfrobust_did_not_make_before_loading_anything(tmp_path, monkeypatch):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")

    def load(*args, **kwargs):
        raise AssertionError("the data was loaded before the refusal")

    monkeypatch.setattr(data_lib, "load", load)
    with pytest.raises(run_lib.RunError, match=r"--fresh refuses to delete .*thesis.*holds chapter1.tex"):
        experiment.train(_recipe(1), str(precious), verbose=0, fresh=True)
    assert os.listdir(precious) == ["chapter1.tex"]


def test_fresh_deletes_a_run_only_after_the_data_and_model_check_out(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    run = tmp_path / "run"
    experiment.train(_recipe(1), str(run), verbose=0)
    before = sorted(os.listdir(run))

    def broken(*args, **kwargs):
        raise FileNotFoundError("no CIFAR-10 here")

    monkeypatch.setattr(data_lib, "load", broken)
    with pytest.raises(FileNotFoundError):
        experiment.train(_recipe(1), str(run), verbose=0, fresh=True)
    assert sorted(os.listdir(run)) == before
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    with pytest.raises(ValueError, match="Unknown model"):
        experiment.train(_recipe(1).override({"model.name": "resnet9000"}), str(run), verbose=0, fresh=True)
    assert sorted(os.listdir(run)) == before
    # A good recipe starts again: one command line, the new one.
    experiment.train(_recipe(1), str(run), verbose=0, fresh=True, command="tfrobust train again")
    assert (run / "command.txt").read_text() == "tfrobust train again\n"


def test_a_refused_command_is_not_recorded_as_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    recipe_file = os.path.join(REPO, "recipes", "tfrobust_mnist_linf_pgd_cnn.py")
    run = tmp_path / "run"
    small = ["--variant", "small", "--set", "data.n_train=32", "--set", "data.batch_size=16", "--set", "train.val_n=0",
             "--set", "train.epochs=1"]
    assert cli.main(["train", recipe_file, *small, "--output", str(run)]) == 0
    lines = (run / "command.txt").read_text().splitlines()
    # Another recipe in the same directory is refused, and the refusal leaves no line.
    assert cli.main(["train", recipe_file, *small, "--set", "attack.eps=0.1", "--output", str(run)]) == 2
    assert "holds a run of a different recipe" in capsys.readouterr().err
    assert (run / "command.txt").read_text().splitlines() == lines
    assert len((run / "code.txt").read_text().splitlines()) == 1


def test_a_checkpoint_that_disagrees_with_its_state_is_refused(tmp_path, monkeypatch):
    # The old layout (last.keras, then state.json, two renames): a kill between them left the weights of
    # epoch 2 with a state that says 1. Resuming would train epoch 2 twice; it is refused instead.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    run = run_lib.Run(str(tmp_path / "run"))
    experiment.train(_recipe(2), run.directory, verbose=0)
    state = run.state()
    os.replace(run.checkpoint_file(state), os.path.join(run.checkpoint_dir, "last.keras"))
    legacy = {"epochs_done": 1, "step": 0, "logs": {}}
    (tmp_path / "run" / "checkpoints" / "state.json").write_text(json.dumps(legacy))
    with pytest.raises(run_lib.RunError, match="after 4 optimizer steps.*records 1 epochs and 0 steps"):
        experiment.train(_recipe(3), run.directory, verbose=0)


def test_a_run_checkpointed_in_the_old_layout_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # Runs started before checkpoints were committed as a unit (last.keras and a state.json without a hash)
    # resume with the new code, checked by the optimizer step their position implies.
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    straight = experiment.train(_recipe(2), str(tmp_path / "straight"), verbose=0)
    run = run_lib.Run(str(tmp_path / "old"))
    experiment.train(_recipe(1), run.directory, verbose=0)
    os.replace(run.checkpoint_file(), os.path.join(run.checkpoint_dir, "last.keras"))
    (tmp_path / "old" / "checkpoints" / "state.json").write_text(json.dumps({"epochs_done": 1, "step": 0, "logs": {}}))
    os.remove(os.path.join(run.directory, run_lib.MARKER))
    resumed = experiment.train(_recipe(2), run.directory, verbose=0)
    _assert_same(_weights(resumed.model), _weights(straight.model))
    assert sorted(os.listdir(run.checkpoint_dir)) == ["ckpt-e2-s0.keras", "state.json"] and run.is_marked()


def test_a_damaged_checkpoint_or_state_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    run = run_lib.Run(str(tmp_path / "run"))
    experiment.train(_recipe(1), run.directory, verbose=0)
    path = run.checkpoint_file()
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(run_lib.RunError, match=r"ckpt-e1-s0.keras does not match the hash"):
        experiment.train(_recipe(2), run.directory, verbose=0)
    with open(run.state_path, "w") as f:
        f.write("{garbage")
    with pytest.raises(run_lib.RunError, match=r"checkpoints/state.json is not a valid checkpoint state"):
        experiment.train(_recipe(2), run.directory, verbose=0)


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_a_finished_run_rewrites_a_missing_or_damaged_final_model(tmp_path, monkeypatch, damage, capsys):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(32, 16))
    run = run_lib.Run(str(tmp_path / "run"))
    first = _weights(experiment.train(_recipe(2), run.directory, verbose=0).model)
    if damage == "empty":
        open(run.model_path, "w").close()
        with pytest.raises(run_lib.RunError, match="model.keras is incomplete or damaged"):
            experiment.load_classifier(run.directory)
    else:
        os.remove(run.model_path)
        # eval RUN then uses the last checkpoint, and says so.
        experiment.load_classifier(run.directory)
        assert "has no model.keras" in capsys.readouterr().err
    again = experiment.train(_recipe(2), run.directory, verbose=0)
    assert f"is {'corrupt' if damage == 'empty' else 'missing'}: writing it again" in capsys.readouterr().err
    assert run.final_status() == "ok"
    _assert_same(_weights(keras.models.load_model(run.model_path)), first)
    _assert_same(_weights(again.model), first)


_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
from tests import helpers
from tfrobust import data as data_lib, experiment
from tests.test_experiment import _kill_recipe
data_lib.load = helpers.fake_split(64, 16)
result = experiment.train(_kill_recipe(), sys.argv[1], verbose=0)
import numpy as np
np.savez(os.path.join(sys.argv[1], "weights.npz"), *[w.numpy() for w in result.model.classifier.weights])
"""


def _run(script, directory, kill_at=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop(faults.KILL_ENV, None)
    if kill_at:
        env[faults.KILL_ENV] = kill_at
    return subprocess.run([sys.executable, str(script), str(directory)], env=env, capture_output=True, text=True,
                          cwd=REPO)


def _kill_and_rerun(tmp_path, points):
    """Kills the training at each point, reruns the same command, and compares with an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(repo=REPO))
    straight = _run(script, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    expected = np.load(tmp_path / "straight" / "weights.npz")
    for point in points:
        directory = tmp_path / point.replace("#", "_")
        killed = _run(script, directory, kill_at=point)
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        again = _run(script, directory)
        assert again.returncode == 0, (point, again.stderr[-2000:])
        got = np.load(directory / "weights.npz")
        for key in expected.files:
            np.testing.assert_array_equal(expected[key], got[key], err_msg=point)
        final = keras.models.load_model(directory / "model.keras")
        _assert_same(_weights(final), [expected[k] for k in expected.files])
        left = sorted(os.listdir(directory / "checkpoints"))
        assert left == ["ckpt-e3-s0.keras", "state.json"], (point, left)


def test_a_kill_between_the_checkpoint_file_and_its_state_loses_nothing(tmp_path):
    # The _kill_recipe checkpoints at step 2 of each epoch and at each epoch's end; #2 is the end of epoch 1.
    _kill_and_rerun(tmp_path, ["checkpoint.renamed#2"])


@pytest.mark.slow
def test_kills_inside_every_write_of_checkpoints_and_of_the_final_model_lose_nothing(tmp_path):
    points = [f"checkpoint.{where}#{k}" for where in ("before_rename", "renamed", "committed") for k in (2, 3)]
    _kill_and_rerun(tmp_path, points + ["final.before_rename", "final.renamed", "final.committed"])


_EVAL_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
import numpy as np
from tests import helpers
from tfrobust.attacks import PGD
from tfrobust.evaluation.robustness import evaluate
model = helpers.tiny_classifier()
x, y, _ = helpers.toy_data(n=24)
report = evaluate(model, x, y, [PGD(0.1, steps=2)], batch_size=6, verbose=0, checks=False, state_dir=sys.argv[1])
np.savez(os.path.join(sys.argv[1], "out.npz"), clean=report.clean_correct, robust=report.results[0].robust)
"""


@pytest.mark.parametrize("point", ["batch_store.before_rename#2", "batch_store.renamed#3"])
def test_a_killed_evaluation_resumes_from_its_state_dir_to_the_same_outcomes(tmp_path, point):
    script = tmp_path / "eval.py"
    script.write_text(_EVAL_SCRIPT.format(repo=REPO))
    straight = _run(script, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _run(script, tmp_path / "killed", kill_at=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "out.npz").exists()
    again = _run(script, tmp_path / "killed")
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = np.load(tmp_path / "straight" / "out.npz"), np.load(tmp_path / "killed" / "out.npz")
    np.testing.assert_array_equal(a["clean"], b["clean"])
    np.testing.assert_array_equal(a["robust"], b["robust"])


def test_a_damaged_evaluation_state_names_the_file(tmp_path):
    from tfrobust.stores import BatchStore

    (tmp_path / "manifest.json").write_text('{"model": ')
    with pytest.raises(ValueError, match=r"manifest.json is not valid JSON .* state there is damaged"):
        BatchStore(str(tmp_path), {"model": "m"}, what="evaluation")


def test_train_commands_follow_init_from_oldest_first(tmp_path):
    base, finetune = tmp_path / "base", tmp_path / "finetune"
    for run, lines in ((base, ["tfrobust train a.py", "tfrobust train a.py  # resumed"]),
                       (finetune, ["tfrobust train b.py"])):
        run.mkdir()
        (run / "command.txt").write_text("\n".join(lines) + "\n")
    (base / "recipe.json").write_text(json.dumps({"train": {"init_from": None}}))
    (finetune / "recipe.json").write_text(json.dumps({"train": {"init_from": str(base / "model.keras")}}))
    assert run_lib.train_commands(str(finetune)) == ["tfrobust train a.py", "tfrobust train a.py  # resumed",
                                                 "tfrobust train b.py"]
    assert run_lib.train_commands(str(base)) == ["tfrobust train a.py", "tfrobust train a.py  # resumed"]
    # What an evaluation or export records of the run's training.
    assert run_lib.trained_with(str(finetune / "model.keras")) == {
        "trained_with": {"train": {"init_from": str(base / "model.keras")}},
        "train_command": ["tfrobust train a.py", "tfrobust train a.py  # resumed", "tfrobust train b.py"]}
    assert run_lib.trained_with(str(finetune / "other.keras")) == {}
    assert run_lib.trained_with("anywhere", {"train_command": ["x"], "trained_with": None}) == {
        "train_command": ["x"]}
