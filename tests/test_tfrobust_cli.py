"""The `tfrobust` command's parser: help and version without TensorFlow, and quiet TensorFlow logs."""

import json
import os
import subprocess
import sys

import pytest

import tfrobust
import tfrobust_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs tfrobust_cli.main(ARGV) in a fresh interpreter, then reports what it imported and the log level it left.
WRAPPER = """
import json, os, sys
import tfrobust_cli
try:
    code = tfrobust_cli.main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "tfrobust": "tfrobust" in sys.modules, "level": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}))
"""


def _run(*argv, env=None):
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    base["PYTHONPATH"] = REPO + os.pathsep + base.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True,
                         env=dict(base, **(env or {})), timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1]), out


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["eval", "--help"]])
def test_help_and_version_import_no_tensorflow(argv):
    report, out = _run(*argv)
    assert report["code"] == 0
    assert not report["tensorflow"] and not report["keras"] and not report["tfrobust"], report
    assert out.stderr == ""


def test_version_is_the_package_version():
    _, out = _run("--version")
    assert out.stdout.splitlines()[0] == f"tfrobust {tfrobust.__version__}"
    assert tfrobust_cli.version() == tfrobust.__version__


@pytest.mark.parametrize("argv", [["--verbose", "recipes"], ["recipes", "--verbose"]])
def test_verbose_before_or_after_the_command(argv):
    assert tfrobust_cli.build_parser().parse_args(argv).verbose is True
    assert tfrobust_cli.build_parser().parse_args(["recipes"]).verbose is False


def test_a_command_quiets_tensorflow_unless_verbose_or_the_user_set_a_level():
    quiet, out = _run("recipes")
    assert quiet["code"] == 0 and quiet["tensorflow"]  # the command ran, with TensorFlow imported
    assert quiet["level"] == tfrobust_cli.QUIET_TF_LOG_LEVEL
    assert out.stderr == ""  # no C++ log lines, not even those TensorFlow prints before reading the level
    verbose, _ = _run("recipes", "--verbose")
    assert verbose["code"] == 0 and verbose["level"] is None
    users, _ = _run("recipes", env={"TF_CPP_MIN_LOG_LEVEL": "1"})
    assert users["code"] == 0 and users["level"] == "1"


@pytest.mark.parametrize("argv", [
    ["train", "r", "--output", "o"], ["eval", "m"], ["export", "run"], ["landscape", "m", "--out", "o"],
    ["geometry", "run"], ["bench"], ["compare", "a=b"], ["curves", "a=b"], ["mixbn-stats", "m"],
    ["generated-stats"], ["serve-client", "--model", "m"], ["serve", "m"], ["main"], ["recipes"]])
def test_every_command_names_its_function_whatever_its_arguments_are_called(argv):
    from tfrobust import cli

    args = tfrobust_cli.build_parser().parse_args(argv)
    assert args.handler == "cmd_" + argv[0].replace("-", "_") and callable(getattr(cli, args.handler))


@pytest.mark.parametrize("spelling", [["--span", "-1,1"], ["--span=-1,1"], ["--span", "-.5,2"]])
def test_a_negative_span_parses_with_or_without_the_equals_sign(spelling):
    args = tfrobust_cli.build_parser().parse_args(
        tfrobust_cli._joined_negative_values(["landscape", "RUN", "--out", "OUT", *spelling]))
    assert args.span == ((-1.0, 1.0) if "-1,1" in spelling[-1] else (-0.5, 2.0))
    # Without the join, argparse reads "-1,1" as an unknown option: the bug this guards against.
    if len(spelling) == 2:
        with pytest.raises(SystemExit):
            tfrobust_cli.build_parser().parse_args(["landscape", "RUN", "--out", "OUT", *spelling])
    # Only --span is joined: another flag keeps a value that starts with a minus sign as argparse reads it.
    assert tfrobust_cli._joined_negative_values(["--out", "-x"]) == ["--out", "-x"]


def _python_m(*argv, cwd=None, importtime=False):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *(["-X", "importtime"] if importtime else []), "-m", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"]])
def test_python_m_tfrobust_answers_help_without_tensorflow(argv):
    out = _python_m("tfrobust", *argv, importtime=True)
    assert out.returncode == 0 and out.stdout.startswith(("usage: tfrobust", "tfrobust "))
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "tfrobust" in imported and "tensorflow" not in imported and "keras" not in imported


def test_python_m_tfrobust_runs_a_command_with_the_whole_package_and_quiet_logs():
    out = _python_m("tfrobust", "recipes")
    assert out.returncode == 0 and "tfrobust_mnist_linf_pgd_cnn" in out.stdout
    assert out.stderr == ""
    bad = _python_m("tfrobust", "eval", "no_such_run")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("tfrobust eval: error: No model named 'no_such_run'")


def test_another_module_run_with_python_m_gets_the_whole_package(tmp_path):
    # While `python -m other` locates `other`, sys.argv[0] is "-m" as it is for `python -m tfrobust`.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("import keras, tfrobust\n"
                                                  "print(tfrobust.AdversarialModel.__name__, "
                                                  "'tfrobust>AdversarialModel' in keras.saving.get_custom_objects())\n")
    (tmp_path / "other" / "__main__.py").write_text("")
    out = _python_m("other", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AdversarialModel", "True"]
