"""Training curves: best epoch, final value and the robust-overfitting gap from history.csv files."""

import json

import numpy as np
import pytest

from tfrobust import cli
from tfrobust.evaluation import curves


def _history(path, values, resumed_epoch=None):
    path.mkdir()
    lines = ["epoch,loss,val_robust_accuracy"]
    for e, v in enumerate(values):
        if e == resumed_epoch:
            # A run killed during an epoch and resumed writes that epoch again; the later line counts.
            lines.append(f"{e},9.9,0.0")
        lines.append(f"{e},1.0,{v}")
    (path / "history.csv").write_text("\n".join(lines) + "\n")
    return str(path)


def test_summary_of_an_overfitting_and_a_steady_group(tmp_path):
    over = [_history(tmp_path / f"over_s{s}", [0.2, 0.3 + d, 0.25, 0.2 - d]) for s, d in enumerate([0.0, 0.02])]
    steady = [_history(tmp_path / "steady_s0", [0.1, 0.2, 0.25, 0.3], resumed_epoch=1)]
    result = curves.summarise([("over", over), ("steady", steady)])
    g = result["groups"]["over"]
    assert g["best_epoch"] == 2 and g["best"] == pytest.approx(0.31) and g["final"] == pytest.approx(0.19)
    assert g["gap"] == pytest.approx(0.12)
    assert [r["gap"] for r in g["per_run"]] == pytest.approx([0.10, 0.14])
    assert g["min"][1] == pytest.approx(0.30) and g["max"][1] == pytest.approx(0.32)
    s = result["groups"]["steady"]
    assert s["mean"] == pytest.approx([0.1, 0.2, 0.25, 0.3]) and s["gap"] == 0 and s["best_epoch"] == 4
    text = curves.table(result)
    assert "| over | 2 | 4 | 2 | 31.00 | 19.00 | +12.00 |" in text and "| 4 | 19.00 | 30.00 |" in text


def test_runs_still_training_compare_on_common_epochs(tmp_path):
    runs = [_history(tmp_path / "a", [0.1, 0.2, 0.3]), _history(tmp_path / "b", [0.1, 0.4])]
    g = curves.summarise([("g", runs)])["groups"]["g"]
    assert g["epochs"] == 2 and g["mean"] == pytest.approx([0.1, 0.3])


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.csv"):
        curves.read_history(str(tmp_path))
    run = _history(tmp_path / "r", [0.1])
    with pytest.raises(ValueError, match="no 'val_clean_accuracy' column"):
        curves.summarise([("g", [run])], metric="val_clean_accuracy")


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
