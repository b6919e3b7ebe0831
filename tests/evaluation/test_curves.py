"""Training curves: best epoch, final value and the robust-overfitting gap from history.csv files."""

import json

import keras
import numpy as np
import pytest

from tfrobust import cli
from tfrobust.evaluation import curves


def _history(path, values, skip=()):
    path.mkdir()
    lines = ["epoch,loss,val_robust_accuracy"]
    # A run killed after its checkpoint but before its CSV line resumes at the next epoch: a gap.
    lines += [f"{e},{1 - v},{v}" for e, v in enumerate(values) if e not in skip]
    (path / "history.csv").write_text("\n".join(lines) + "\n")
    return str(path)


def test_summary_of_an_overfitting_and_a_steady_group(tmp_path):
    over = [_history(tmp_path / f"over_s{s}", [0.2, 0.3 + d, 0.25, 0.2 - d]) for s, d in enumerate([0.0, 0.02])]
    steady = [_history(tmp_path / "steady_s0", [0.1, 0.2, 0.25, 0.3])]
    result = curves.summarise([("over", over), ("steady", steady)])
    g = result["groups"]["over"]
    assert g["best_epoch"] == 2 and g["best"] == pytest.approx(0.31) and g["final"] == pytest.approx(0.19)
    assert g["gap"] == pytest.approx(0.12) and g["cut_from"] is None
    assert [r["gap"] for r in g["per_run"]] == pytest.approx([0.10, 0.14])
    assert g["min"][1] == pytest.approx(0.30) and g["max"][1] == pytest.approx(0.32)
    s = result["groups"]["steady"]
    assert s["mean"] == pytest.approx([0.1, 0.2, 0.25, 0.3]) and s["gap"] == 0 and s["best_epoch"] == 4
    text = curves.table(result)
    assert "| over | 2 | 4 | 2 | 31.00 | 19.00 | +12.00 |" in text and "| 4 | 19.00 | 30.00 |" in text


def test_runs_align_by_epoch_number_and_are_cut_where_one_is_still_training(tmp_path):
    gap = _history(tmp_path / "gap", [0.1, 0.2, 0.9, 0.4, 0.5], skip={2})
    full = _history(tmp_path / "full", [0.1, 0.2, 0.3, 0.4, 0.5])
    g = curves.summarise([("g", [gap, full])])["groups"]["g"]
    # Epoch 3 is the full run's alone, not the gapped run's epoch 4 averaged in.
    assert g["mean"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    short = _history(tmp_path / "short", [0.1, 0.4])
    result = curves.summarise([("g", [full, short])])
    g = result["groups"]["g"]
    assert g["epochs"] == 2 and g["mean"] == pytest.approx([0.1, 0.3]) and g["cut_from"] == 5
    assert "cut at epoch 2" in curves.table(result)


def test_a_loss_is_best_when_lowest(tmp_path):
    run = _history(tmp_path / "r", [0.2, 0.6, 0.4])  # loss 0.8, 0.4, 0.6
    result = curves.summarise([("g", [run])], metric="loss")
    g = result["groups"]["g"]
    assert result["lower_is_better"] and g["best_epoch"] == 2 and g["gap"] == pytest.approx(0.2)
    assert "final - best" in curves.table(result) and "| g | 1 | 3 | 2 | 0.4 | 0.6 | +0.2 |" in curves.table(result)


def test_reads_what_keras_csvlogger_writes_for_a_run_without_validation(tmp_path):
    # Epoch 0 logs no validation metric (as with val_n=0 on some epochs): CSVLogger writes "NA".
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    logger = keras.callbacks.CSVLogger(str(tmp_path / "history.csv"))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 2.0, "val_robust_accuracy": None})
    logger.on_epoch_end(1, {"loss": 1.0, "val_robust_accuracy": 0.25})
    logger.on_train_end()
    history = curves.read_history(str(tmp_path))
    assert history["epoch"].tolist() == [0, 1] and history["loss"].tolist() == [2.0, 1.0]
    assert np.isnan(history["val_robust_accuracy"][0]) and history["val_robust_accuracy"][1] == 0.25
    g = curves.summarise([("g", [str(tmp_path)])])["groups"]["g"]
    assert g["best_epoch"] == 2 and g["final"] == 0.25


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.csv"):
        curves.read_history(str(tmp_path))
    run = _history(tmp_path / "r", [0.1])
    with pytest.raises(ValueError, match="no 'val_clean_accuracy' column"):
        curves.summarise([("g", [run])], metric="val_clean_accuracy")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "history.csv").write_text("epoch,loss\n0,oops\n")
    with pytest.raises(ValueError, match="epoch 0, loss: 'oops' is not a number"):
        curves.read_history(str(tmp_path / "bad"))


def test_curves_cli_writes_table_plot_and_json(tmp_path, capsys):
    for s in range(2):
        _history(tmp_path / f"none_s{s}", [0.2, 0.3, 0.2])
    png, out = str(tmp_path / "curves.png"), str(tmp_path / "curves.json")
    assert cli.main(["curves", f"none={tmp_path}/none_s*", "--png", png, "--json", out]) == 0
    result = json.load(open(out))
    assert result["command"].startswith("tfrobust curves ") and len(result["groups"]["none"]["runs"]) == 2
    assert np.isclose(result["groups"]["none"]["gap"], 0.1)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "best - final" in capsys.readouterr().out
