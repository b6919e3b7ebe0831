"""Every shipped SavedModel version refuses malformed input with an error instead of aborting the process."""

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS = sorted(glob.glob(os.path.join(REPO, "saved_models", "*", "[0-9]*")))

# Run in a child process: an unguarded model aborts its process (oneDNN's CHECK), which must fail
# this test, not kill pytest.
PROBE = r"""
import json, sys
import numpy as np
import tensorflow as tf

path = sys.argv[1]
md = json.load(open(path + "/metadata.json"))
h, w, c = md["input"]["shape"]
sigs = tf.saved_model.load(path).signatures
good = np.full((2, h, w, c), 0.5, "float32")
nan = good.copy()
nan[0, 0, 0, 0] = np.nan
cases = {
    "float rank 3": ("serving_default", good[:, :, :, 0]),
    "float rank 5": ("serving_default", good[None]),
    "float wrong height": ("serving_default", np.full((1, h + 1, w, c), 0.5, "float32")),
    "float wrong channels": ("serving_default", np.full((1, h, w, c + 2), 0.5, "float32")),
    "float NaN": ("serving_default", nan),
    "float above 1": ("serving_default", good * 3),
    "float below 0": ("serving_default", -good),
    "float given as float64": ("serving_default", good.astype("float64")),
    "uint8 rank 3": ("serve_uint8", np.zeros((2, h, w), "uint8")),
    "uint8 wrong width": ("serve_uint8", np.zeros((1, h, w + 3, c), "uint8")),
    "uint8 given as int32": ("serve_uint8", np.zeros((1, h, w, c), "int32")),
    "bytes not an image": ("serve_image_bytes", np.array([b"not an image"], dtype=object)),
    "bytes rank 2": ("serve_image_bytes", np.array([[b"x"]], dtype=object)),
}
report = {}
for name, (sig, x) in cases.items():
    try:
        sigs[sig](images=tf.constant(x))
        report[name] = "answered"
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        report[name] = "refused: " + type(e).__name__
print("REPORT " + json.dumps(report))
"""


def test_there_are_shipped_models():
    assert len(VERSIONS) >= 3, VERSIONS


@pytest.mark.parametrize("version", VERSIONS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "saved_models")))
def test_malformed_inputs_are_refused_and_the_process_lives(version):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", PROBE, version], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, f"the process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    report = json.loads(line[len("REPORT "):])
    answered = [case for case, outcome in report.items() if not outcome.startswith("refused")]
    assert not answered, f"{version} answered malformed input: {answered}"
    assert len(report) == 13
