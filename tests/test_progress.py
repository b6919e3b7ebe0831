"""Progress lines in a pipe or file (tfrobust.progress)."""

import io
import time

from tfrobust import progress


def test_lines_in_a_pipe_carry_done_total_elapsed_and_eta():
    out = io.StringIO()  # not a terminal
    with progress.Progress(4, "evaluation: pgd", "batch", verbose="auto", interval=0.05, stream=out) as bar:
        time.sleep(0.12)  # a slow first step: lines keep coming while it runs
        bar.update(1)
        time.sleep(0.12)
        bar.update(4)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[evaluation: pgd] 0/4 batches, 0s elapsed"
    assert sum("0/4 batches" in ln for ln in lines) >= 2
    assert any("1/4 batches" in ln and "ETA" in ln for ln in lines)
    assert lines[-1].startswith("[evaluation: pgd] 4/4 batches") and lines[-1].endswith("finished")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_resumed_stage_estimates_from_its_own_steps_and_a_finished_one_is_quiet():
    out = io.StringIO()
    bar = progress.Progress(10, "x", "point", done=8, verbose=2, interval=60, stream=out)
    assert bar.describe().startswith("[x] 8/10 points")
    assert "ETA" not in bar.describe()  # nothing ran yet in this process
    bar.update(9)
    assert "ETA" in bar.describe()
    bar.close()
    quiet = io.StringIO()
    progress.Progress(3, "y", done=3, verbose=2, stream=quiet).close()
    progress.Progress(3, "z", verbose=0, stream=quiet).close()
    assert quiet.getvalue() == ""


def test_durations_read_as_hours_minutes_seconds():
    assert progress._duration(5) == "5s"
    assert progress._duration(65) == "1m05s"
    assert progress._duration(3725) == "1h02m05s"
