"""Gradients flow through a reloaded export: re-attacking it reproduces its metadata.json.

Users re-attack shipped models through `serving_default`; the figures in
metadata.json must come out again from the SavedModel alone, in a fresh
process, with the parameters and seeds that metadata.json records.
"""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust.config import AttackConfig, DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _reattack(version_dir, attack, n, out):
    """`tfrobust eval` of the export in a fresh process; returns the attack's accuracy."""
    cmd = [sys.executable, "-m", "tfrobust", "eval", version_dir, "--attacks", attack, "--n", str(n),
           "--no-checks", "--json", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        report = json.load(f)
    (row,) = [r for r in report["results"] if r["attack"] == attack]
    return row["accuracy"], report


def test_pgd_through_a_reloaded_export_reproduces_its_metadata(tmp_path):
    recipe = Recipe(
        name="reattack_test",
        data=DataConfig(dataset="mnist"),
        model=ModelConfig(name="wong_cnn"),
        attack=AttackConfig(name="pgd", eps=0.1, steps=3),
        train=TrainConfig(method="standard", epochs=1),
        eval=EvalConfig(attacks=("pgd",), steps=3, restarts=2, step_size=0.04, n=200, checks="off"),
    )
    # A briefly trained classifier, so that PGD leaves a robust accuracy
    # strictly between 0 and clean and every flipped example would show.
    keras.utils.set_random_seed(0)
    train = data_lib.load("mnist", "train")
    classifier = experiment.build_classifier(recipe, train.info)
    classifier.compile(optimizer=keras.optimizers.Adam(2e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(train.images[:3000].astype("float32") / 255.0, train.labels[:3000], batch_size=100,
                   epochs=1, verbose=0)
    report = experiment.evaluate(classifier, recipe, verbose=0)
    pgd = report.results[0].accuracy
    assert 0.05 < pgd < report.clean_accuracy - 0.05
    version_dir = experiment.export(classifier, recipe, report, base_dir=str(tmp_path / "saved"))

    again, json_report = _reattack(version_dir, "pgd", 200, str(tmp_path / "re.json"))
    md = json.load(open(os.path.join(version_dir, "metadata.json")))
    assert md["metrics"]["robust_accuracy"]["pgd"] == pytest.approx(pgd)
    assert abs(again - pgd) <= 0.005
    assert json_report["clean_accuracy"] == pytest.approx(report.clean_accuracy)
    params = [r for r in json_report["results"] if r["attack"] == "pgd"][0]["params"]
    assert params["steps"] == 3 and params["restarts"] == 2


def _latest(model_dir):
    versions = [int(os.path.basename(p)) for p in glob.glob(os.path.join(model_dir, "*")) if
                os.path.basename(p).isdigit()]
    return os.path.join(model_dir, str(max(versions)))


@pytest.mark.slow
@pytest.mark.parametrize("model_dir", sorted(glob.glob(os.path.join(REPO, "saved_models", "*", ""))))
def test_shipped_model_pgd_figure_reproduces_through_its_savedmodel(model_dir, tmp_path):
    version_dir = _latest(model_dir.rstrip("/"))
    md = json.load(open(os.path.join(version_dir, "metadata.json")))
    metrics = md.get("metrics")  # none for an export made before its evaluation (--no-eval)
    if not metrics or "pgd" not in metrics["robust_accuracy"]:
        pytest.skip(f"{version_dir} records no PGD figure")
    again, _ = _reattack(version_dir, "pgd", metrics["n"], str(tmp_path / "re.json"))
    assert abs(again - metrics["robust_accuracy"]["pgd"]) <= 0.005, (again, metrics["robust_accuracy"]["pgd"])
