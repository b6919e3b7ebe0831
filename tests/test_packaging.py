"""The wheel, installed as a user would (not editable), works outside the checkout."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_RECIPE = "tfrobust_mnist_linf_pgd_cnn"


def _run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, timeout=1200, **kwargs)
    assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_the_main_job_from_another_directory(tmp_path):
    # Built from a copy, so the checkout gets no build/ or egg-info; only what packaging needs is copied.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "runs", "docs", "benchmarks", "tests", ".tmp-*"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)])
    (wheel,) = glob.glob(str(dist / "tfrobust-*.whl"))

    # --system-site-packages: TensorFlow and the other dependencies come from this interpreter, not a download.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    python, command = str(venv / "bin" / "python"), str(venv / "bin" / "tfrobust")
    # --force-reinstall: this interpreter may have tfrobust installed (e.g. editable from a checkout).
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONUNBUFFERED"] = "1"
    where = _run([python, "-c", "import tfrobust_cli, tfrobust.config as c; "
                  "print(tfrobust_cli.__file__); print(c.__file__); print(c.find_recipe('" + MAIN_RECIPE + "'))"],
                 cwd=elsewhere, env=env).split()
    site = str(venv / "lib")
    assert all(path.startswith(site) for path in where), where  # the venv's copy, not the checkout's
    assert _run([command, "--version"], cwd=elsewhere, env=env).strip() == "tfrobust " + _run(
        [python, "-c", "import tfrobust; print(tfrobust.__version__)"], cwd=elsewhere, env=env).strip()
    assert "| " + MAIN_RECIPE + " |" in _run([command, "recipes"], cwd=elsewhere, env=env)

    # The zoo: a shipped model by name, from the venv's copy, checked against the index's SHA-256.
    zoo = _run([python, "-c", "import tfrobust, numpy as np; m, md = tfrobust.zoo.load('mnist_linf_pgd_cnn', "
                "with_metadata=True); print(tfrobust.zoo.path('mnist_linf_pgd_cnn')); "
                "print(m(np.zeros((2, 28, 28, 1), 'float32')).shape, md['name'])"], cwd=elsewhere, env=env).split("\n")
    assert zoo[0].startswith(site) and zoo[1] == "(2, 10) mnist_pgd_linf", zoo
    assert "| `mnist_linf_pgd_cnn` | mnist |" in _run([command, "zoo", "leaderboard"], cwd=elsewhere, env=env)

    # `tfrobust main` as far as its first epoch: the recipe and the bundled data loaded, the model built.
    proc = subprocess.Popen([command, "main", "--output", "runs/main", "--saved-models", "saved_models"],
                            cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    timer = threading.Timer(1200, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Epoch 1/"):
                break
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert lines and lines[-1].startswith("Epoch 1/"), "".join(lines) + stderr[-3000:]
    assert any(line.startswith("[1/3] Training " + MAIN_RECIPE) for line in lines), lines
    assert (elsewhere / "runs" / "main" / "recipe.json").exists()
