"""The shell helpers of the reproduce scripts (docs/results/lib.sh)."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash(script, cwd):
    return subprocess.run(["bash", "-c", f". {REPO}/docs/results/lib.sh\n{script}"], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.split()


def test_collected_needs_every_file_and_leaves_the_callers_loop_variables_alone(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval.json").write_text("{}")
    # The ratio sweep loops over `f`: `collected` must not reassign it (it did, and the sweep then
    # trained with data.generated_fraction=eval.json).
    out = _bash("for f in 0.3 0.9; do collected run eval.json && echo yes$f || echo no$f; "
                "collected run eval.json history.csv && echo yes$f || echo no$f; done", tmp_path)
    assert out == ["yes0.3", "no0.3", "yes0.9", "no0.9"]


def test_check_parts_names_an_unknown_part(tmp_path):
    result = subprocess.run(["bash", "-c", f". {REPO}/docs/results/lib.sh\ncheck_parts 'rows dpeth' rows depth"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown part 'dpeth'" in result.stderr
