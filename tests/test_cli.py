"""The command line, end to end on a few hundred bundled MNIST images."""

import csv
import json
import os
import subprocess
import sys

import pytest

from tests import helpers
from tfrobust import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "tfrobust_mnist_linf_pgd_cnn.py")


@pytest.mark.parametrize("command", ["train", "eval", "export", "main", "mixbn-stats", "landscape", "bench", "compare",
                                     "geometry", "generated-stats", "curves", "serve", "serve-client"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    assert "usage: tfrobust " + command in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tfrobust", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout


def test_an_unknown_recipe_name_is_one_line_naming_the_recipes_command(tmp_path, capsys):
    code = cli.main(["train", "wong2020_no_such_recipe", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "wong2020_no_such_recipe" in err and "`tfrobust recipes`" in err
    assert not (tmp_path / "run").exists()


def test_recipes_lists_the_shipped_recipes(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "| wong2020_cifar10_linf_fgsm_rs_preactresnet18 | " in out
    assert "| tfrobust_mnist_linf_pgd_cnn | " in out


def test_unknown_recipe_key_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["train", RECIPE, "--variant", "small", "--set", "epoch=3", "--output", str(tmp_path)])
    assert code == 2
    assert "Unknown recipe key" in capsys.readouterr().err


def test_train_eval_export_end_to_end(tmp_path, capsys):
    run = str(tmp_path / "run")
    small = ["--variant", "small", "--set", "data.n_train=200", "--set", "train.val_n=50"]
    assert cli.main(["train", RECIPE, *small, "--output", run]) == 0
    from tfrobust import run as run_lib

    assert os.path.exists(run_lib.Run(run).checkpoint_file()) and os.path.exists(os.path.join(run, ".tfrobust-run"))
    assert os.path.isdir(os.path.join(run, "tensorboard"))
    assert os.path.exists(os.path.join(run, "history.csv"))
    # The epoch's wall time, and the part of it spent validating (train.val_n=50).
    row = next(csv.DictReader(open(os.path.join(run, "history.csv"))))
    assert float(row["seconds"]) > float(row["validation_seconds"]) > 0

    out_json = str(tmp_path / "eval.json")
    code = cli.main(["eval", run, "--attacks", "pgd,fgsm", "--eps", "0.3,3/10", "--n", "40",
                     "--steps", "2", "--restarts", "1", "--json", out_json])
    assert code == 0
    report = json.load(open(out_json))
    assert report["n"] == 40
    assert {r["attack"] for r in report["results"]} == {"pgd", "fgsm", "worst_case"}
    out = capsys.readouterr().out
    assert "| clean" in out
    # The recipe's masking checks ran, and the output and the file say so.
    assert report["checks"] in ("quick", "full") and f"Gradient-masking checks ({report['checks']})" in out
    # The evaluation says how it was made and how the model was trained, also once copied out of the run.
    assert report["command"].startswith("tfrobust eval ") and "--eps 0.3,3/10" in report["command"]
    assert report["trained_with"] == json.load(open(os.path.join(run, "recipe.json")))
    assert report["train_command"][0].startswith("tfrobust train ") and RECIPE in report["train_command"][0]
    # And which code printed it; the run says which code trained it, one line per invocation.
    from tfrobust.version import code_version

    assert report["code"] == code_version()
    assert open(os.path.join(run, "code.txt")).read().splitlines() == [code_version()]
    # Clean accuracy only: the same clean figure, no attack rows.
    clean_json = str(tmp_path / "clean.json")
    assert cli.main(["eval", run, "--attacks", "none", "--n", "40", "--json", clean_json]) == 0
    clean_only = json.load(open(clean_json))
    assert clean_only["results"] == [] and clean_only["clean_accuracy"] == report["clean_accuracy"]
    printed = capsys.readouterr().out
    assert f"| clean  | {100 * report['clean_accuracy']:.2f} [" in printed and "1-SSIM" not in printed


    saved = str(tmp_path / "saved_models")
    state = str(tmp_path / "export_state")
    assert cli.main(["export", run, "--output", saved, "--n", "40", "--state-dir", state]) == 0
    assert os.path.exists(os.path.join(state, "batch_000000.npz"))
    version_dir = os.path.join(saved, "mnist_pgd_linf", "1")
    md = json.load(open(os.path.join(version_dir, "metadata.json")))
    # The export prints, as eval does, whether the masking checks that its metadata records warned.
    assert f"Gradient-masking checks ({md['metrics']['checks']})" in capsys.readouterr().out
    assert md["dataset"] == "mnist" and md["threat_model"] == {"norm": "linf", "eps": 0.3}
    assert md["metrics"]["n"] == 40
    assert md["train_command"][0].startswith("tfrobust train ") and RECIPE in md["train_command"][0]
    assert set(md["metrics"]["robust_accuracy"]) >= {"pgd", "pgd_margin", "fgsm", "autoattack", "worst_case"}
    assert [c["name"] for c in md["metrics"]["attacks"]["autoattack"]["components"]] == [
        "apgd-ce", "apgd-t", "fab-t", "square"]

    # The export itself evaluates like the run it came from.
    out_json2 = str(tmp_path / "eval2.json")
    assert cli.main(["eval", version_dir, "--attacks", "fgsm", "--n", "40", "--json", out_json2]) == 0
    report2 = json.load(open(out_json2))
    assert report2["clean_accuracy"] == pytest.approx(md["metrics"]["clean_accuracy"])
    # ...and its evaluation still knows the training run's recipe and commands.
    assert report2["trained_with"] == report["trained_with"] == md["trained_with"]
    assert report2["train_command"] == md["train_command"]
    # The export records the machine and the wall times, and lists the model in models.config.
    assert md["hardware"]["cores"] >= 1 and md["wall_time_s"]["train"] > 0 and md["wall_time_s"]["eval"] > 0
    assert 'name: "mnist_pgd_linf"' in open(os.path.join(saved, "models.config")).read()

    # Export first, evaluate later: --no-eval writes no metrics; exporting that version again evaluates it
    # (the same numbers as the first export's) and keeps the lineage.
    assert cli.main(["export", run, "--output", saved, "--no-eval"]) == 0
    early = json.load(open(os.path.join(saved, "mnist_pgd_linf", "2", "metadata.json")))
    assert "metrics" not in early and early["train_command"] == md["train_command"]
    late_json = str(tmp_path / "late.json")
    assert cli.main(["export", os.path.join(saved, "mnist_pgd_linf", "2"), "--output", saved, "--n", "40",
                     "--state-dir", str(tmp_path / "export_state2"), "--json", late_json]) == 0
    late = json.load(open(os.path.join(saved, "mnist_pgd_linf", "3", "metadata.json")))
    assert late["metrics"]["robust_accuracy"] == md["metrics"]["robust_accuracy"]
    assert late["reexported_from"]["version"] == 2 and late["reexported_from"]["logit_check"]["n"] == 10000
    assert late["train_command"] == md["train_command"] and late["wall_time_s"]["eval"] > 0
    assert late["evaluated_with"]["command"].startswith("tfrobust export ")
    late_report = json.load(open(late_json))
    assert late_report["n"] == 40 and late_report["train_command"] == md["train_command"]
    assert {r["attack"]: r["accuracy"] for r in late_report["results"]} == late["metrics"]["robust_accuracy"]


def test_eval_of_a_keras_file_with_the_attack_suite(tmp_path, capsys):
    # MODEL may be a .keras file; the new attacks, resumable state and 1-SSIM.
    keras_file = str(tmp_path / "tiny.keras")
    helpers.tiny_classifier(input_shape=(28, 28, 1), num_classes=10).save(keras_file)
    out_json3 = str(tmp_path / "eval3.json")
    state = str(tmp_path / "state")
    args = ["eval", keras_file, "--recipe", RECIPE, "--variant", "small", "--n", "12",
            "--attacks", "apgd-ce,apgd-t,multitargeted,square,stadv,autoattack", "--apgd-steps", "2",
            "--queries", "5", "--steps", "2",
            "--stadv-eps", "0.5", "--stadv-steps", "2", "--state-dir", state, "--no-checks",
            "--json", out_json3]
    assert cli.main(args) == 0
    report = json.load(open(out_json3))
    assert {r["attack"] for r in report["results"]} >= {"apgd-ce", "apgd-t", "multitargeted", "square", "stadv",
                                                        "autoattack"}
    mt = [r for r in report["results"] if r["attack"] == "multitargeted"][0]
    assert (mt["params"]["target_classes"], mt["params"]["loss"], mt["params"]["steps"]) == (9, "margin", 2)
    # --recipe describes the data and attacks, not how this model was trained: no seed to claim.
    assert "trained_with" not in report and report["command"].startswith("tfrobust eval ")
    assert report["checks"] == "off"  # --no-checks, recorded
    stadv = [r for r in report["results"] if r["attack"] == "stadv"][0]
    assert stadv["norm"] == "flow" and stadv["eps"] == 0.5 and stadv["params"]["steps"] == 2
    assert all("ssim_distance" in r for r in report["results"] if r["attack"] != "worst_case")
    assert os.path.exists(os.path.join(state, "batch_000000.npz"))
    out = capsys.readouterr().out
    assert "1-SSIM" in out
    assert cli.main(args) == 0  # resumes from the saved batch


def test_generated_stats_prints_and_writes_the_table(tmp_path, capsys, monkeypatch):
    import numpy as np

    from tfrobust import data as data_lib

    monkeypatch.setattr(data_lib, "load", helpers.fake_split(120, 40))
    external = str(tmp_path / "ext.npz")
    np.savez(external, image=np.zeros((30, 28, 28, 1), "uint8"))  # unlabelled is fine: labels are not used
    out = str(tmp_path / "stats.json")
    code = cli.main(["generated-stats", "--dataset", "mnist", "--n", "30", "--k", "3",
                     "--generated", f"blank={external}", "--json", out])
    assert code == 0
    text = capsys.readouterr().out
    for name in ("held-out real", "gaussian", "mixup", "blank"):
        assert f"| {name} |" in text
    rows = {r["name"]: r for r in json.load(open(out))["rows"]}
    # Thirty identical blank images are all each other's nearest neighbour, at distance 0.
    assert rows["blank"]["complementarity_self"] == 1.0 and rows["blank"]["distance_ratio_self"] == 0.0
    assert rows["blank"]["coverage_train"] < rows["held-out real"]["coverage_train"]
    assert rows["blank"]["knn_coverage_train"] < rows["held-out real"]["knn_coverage_train"]
    assert json.load(open(out))["command"].startswith("tfrobust generated-stats")
    assert cli.main(["generated-stats", "--dataset", "mnist", "--sets", "gaussian,copies"]) == 2


# Every numeric flag of every subcommand: a value that used to be read as `value or default` (0 became the
# recipe's value, -5 sliced from the end), or that ended in a traceback (8/0) or a null in the JSON (inf), is a
# one-line usage error that names the flag, before anything is loaded.
_BAD_FLAGS = [
    (["eval", "RUN"], "--n", "-5", "must be an integer >= 1"),
    (["eval", "RUN"], "--n", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--steps", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--restarts", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--batch-size", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--apgd-steps", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--queries", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--stadv-steps", "0", "must be an integer >= 1"),
    (["eval", "RUN"], "--stadv-tau", "nan", "must be a finite number"),
    (["eval", "RUN"], "--stadv-eps", "0", "must be > 0"),
    (["eval", "RUN"], "--step-size", "2/0", "divides by zero"),
    (["eval", "RUN"], "--eps", "inf", "must be a finite number"),
    (["eval", "RUN"], "--eps", "8/0", "divides by zero"),
    (["eval", "RUN"], "--eps", "abc", "must be a number such as 0.3 or 8/255"),
    (["eval", "RUN"], "--eps", "0.3,-0.1", "must be > 0"),
    (["eval", "RUN"], "--eps", "nan", "must be a finite number"),
    (["export", "RUN"], "--n", "0", "must be an integer >= 1"),
    (["export", "RUN"], "--batch-size", "0", "must be an integer >= 1"),
    (["report", "RUN", "--output", "OUT"], "--n", "0", "must be an integer >= 1"),
    (["report", "RUN", "--output", "OUT"], "--steps", "0", "must be an integer >= 1"),
    (["report", "RUN", "--output", "OUT"], "--examples", "0", "must be an integer >= 1"),
    (["report", "RUN", "--output", "OUT"], "--factors", "1,-0.5", "must be > 0"),
    (["landscape", "RUN", "--out", "OUT"], "--points", "0", "must be an integer >= 1"),
    (["landscape", "RUN", "--out", "OUT"], "--span", "1,-1", "must be lo,hi with lo < hi"),
    (["landscape", "RUN", "--out", "OUT"], "--eps", "8/0", "divides by zero"),
    (["landscape", "RUN", "--out", "OUT"], "--steps", "0", "must be an integer >= 1"),
    (["landscape", "RUN", "--out", "OUT"], "--n", "0", "must be an integer >= 1"),
    (["landscape", "RUN", "--out", "OUT"], "--sharpness-n", "0", "must be an integer >= 1"),
    (["landscape", "RUN", "--out", "OUT"], "--radius", "inf", "must be a finite number"),
    (["landscape", "RUN", "--out", "OUT"], "--seed", "-1", "must be an integer >= 0"),
    (["bench"], "--batch-size", "0", "must be an integer >= 1"),
    (["bench"], "--steps", "0", "must be an integer >= 1"),
    (["bench"], "--eps", "8/0", "divides by zero"),
    (["bench"], "--reps", "0", "must be an integer >= 1"),
    (["bench"], "--warmup", "-1", "must be an integer >= 0"),
    (["bench"], "--iters", "0", "must be an integer >= 1"),
    (["bench"], "--image-shape", "32,32", "must be H,W,C"),
    (["bench"], "--num-classes", "1", "must be an integer >= 2"),
    (["bench"], "--matmul-n", "0", "must be an integer >= 1"),
    (["generated-stats"], "--n", "0", "must be an integer >= 1"),
    (["generated-stats"], "--k", "0", "must be an integer >= 1"),
    (["generated-stats"], "--seed", "-1", "must be an integer >= 0"),
    (["generated-stats"], "--mixup-alpha", "0", "must be > 0"),
    (["serve-client", "--model", "m"], "--n", "0", "must be an integer >= 1"),
]


@pytest.mark.parametrize("command, flag, value, message", _BAD_FLAGS)
def test_a_bad_numeric_flag_is_a_usage_error_naming_the_flag(command, flag, value, message, tmp_path, capsys):
    command = [str(tmp_path / c) if c in ("RUN", "OUT") else c for c in command]
    with pytest.raises(SystemExit) as e:
        cli.main([*command, f"{flag}={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    # argparse's usage, then one error line.
    assert f"argument {flag}: {message}" in err.strip().splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize("command", [["train", RECIPE, "--output", "OUT"], ["eval", "RUN"], ["export", "RUN"],
                                     ["landscape", "RUN", "--out", "OUT"], ["generated-stats"],
                                     ["serve-client", "--model", "m"], ["main"]])
def test_an_explicit_data_dir_that_does_not_exist_is_refused(command, tmp_path, capsys):
    command = [str(tmp_path / c) if c in ("RUN", "OUT") else c for c in command]
    missing = str(tmp_path / "no-such-data")
    with pytest.raises(SystemExit) as e:
        cli.main([*command, "--data-dir", missing])
    assert e.value.code == 2
    assert f"argument --data-dir: {missing!r} does not exist" in capsys.readouterr().err


def test_a_linf_eps_above_one_is_one_line_naming_the_flag(capsys):
    model = os.path.join(REPO, "saved_models", "mnist_pgd_linf", "3")
    assert cli.main(["eval", model, "--eps", "3", "--n", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfrobust eval: error: --eps: eval.eps must be at most 1 under the Linf norm")
    assert not any("Traceback" in line for line in err)


def test_norm_needs_a_radius_of_that_norm_and_the_recipe_is_checked_as_evaluated(tmp_path, capsys):
    import json
    import shutil

    model = os.path.join(REPO, "saved_models", "mnist_pgd_linf", "3")
    assert cli.main(["eval", model, "--norm", "l2", "--attacks", "none", "--n", "5"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "tfrobust eval: error: --norm l2: the model's recipe is linf at eps=0.3, which is not a l2 radius; "
        "give one with --eps.")
    # An L2 model whose radius, 2, would be refused under Linf: --eps replaces it before the recipe is checked.
    l2 = tmp_path / "l2"
    shutil.copytree(model, l2)
    metadata = json.loads((l2 / "metadata.json").read_text())
    metadata["recipe_config"]["attack"].update(norm="l2", eps=2.0)
    (l2 / "metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "eval.json"
    assert cli.main(["eval", str(l2), "--norm", "linf", "--eps", "0.3", "--attacks", "none", "--n", "5",
                     "--json", str(out)]) == 0
    assert cli.main(["eval", str(l2), "--norm", "linf", "--eps", "3", "--attacks", "none", "--n", "5"]) == 2
    assert "--eps: eval.eps must be at most 1" in capsys.readouterr().err


def test_eval_reads_negative_n_as_an_error_not_as_a_slice_from_the_end(tmp_path, capsys):
    # "--n -5" (a separate argument) is how a user types it; argparse takes it as the value of --n.
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path / "run"), "--n", "-5"])
    assert "argument --n: must be an integer >= 1. Received: '-5'" in capsys.readouterr().err


@pytest.mark.parametrize("source, match", [
    ("def get_config(variant='full'):\n    return (\n", r"bad.py, line \d+: .*not valid Python"),
    ("import nonexistent_module_xyz\n", r"bad.py raised ModuleNotFoundError when loaded"),
    ("def get_config(variant='full'):\n    return 1 / 0\n", r"bad.py: get_config\('full'\) raised ZeroDivisionError"),
])
def test_a_broken_recipe_file_is_one_line_naming_it_and_debug_shows_the_traceback(tmp_path, capsys, source, match):
    recipe = tmp_path / "bad.py"
    recipe.write_text(source)
    assert cli.main(["train", str(recipe), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError):
        cli.main(["train", str(recipe), "--output", str(tmp_path / "run"), "--debug"])


@pytest.mark.parametrize("damage, match", [
    ("metadata", r"metadata.json is not valid JSON"),
    ("graph", r"is not a loadable SavedModel"),
])
def test_a_damaged_savedmodel_is_one_line_naming_it(tmp_path, capsys, damage, match):
    import shutil

    version = tmp_path / "m" / "2"
    shutil.copytree(os.path.join(REPO, "saved_models", "mnist_pgd_linf", "3"), version)
    if damage == "metadata":
        (version / "metadata.json").write_text("{not json")
    else:
        (version / "saved_model.pb").write_bytes(b"\x00garbage")
    assert cli.main(["eval", str(version), "--attacks", "none", "--n", "8"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and __import__("re").search(match, err), err


def test_a_gradient_masking_warning_is_printed_once(tmp_path, capsys):
    import warnings

    import keras

    # A final softmax: the "probabilities" check fires.
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10),
                              keras.layers.Softmax()])
    path = str(tmp_path / "softmax.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(["eval", path, "--recipe", RECIPE, "--variant", "small", "--attacks", "fgsm", "--n", "16"])
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.count("Possible gradient masking (probabilities)") == 1, text
    assert not [w for w in caught if "gradient masking" in str(w.message)]


def test_an_unknown_attack_name_is_one_line_naming_the_flag(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    code = cli.main(["eval", path, "--recipe", RECIPE, "--variant", "small", "--attacks", "fgsm,pgdd", "--n", "8"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "--attacks" in err and "'pgdd'" in err, err
    assert len(err.strip().splitlines()) == 1 and "fgsm_rs" not in err  # the choices are evaluation attacks
    # A training-only attack is refused with the same one line, before any evaluation runs.
    code = cli.main(["eval", path, "--recipe", RECIPE, "--variant", "small", "--attacks", "fgsm_rs", "--n", "8"])
    err = capsys.readouterr().err
    assert code != 0 and "--attacks: 'fgsm_rs' is not an evaluation attack" in err, err
    assert cli.main(["eval", path, "--recipe", RECIPE, "--variant", "small", "--attacks", "FGSM", "--n", "8"]) == 0


def test_export_of_a_path_that_does_not_exist_names_it(tmp_path, capsys):
    missing = str(tmp_path / "no_such_run")
    assert cli.main(["export", missing, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tfrobust export: error: No run directory, .keras file or export at {missing!r}."
    assert not os.path.exists(tmp_path / "out")
