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


def test_a_bar_left_open_stops_quietly_when_its_stream_closes():
    # A caller that never closed its bar (say, an exception before close) must not leave a thread
    # printing tracebacks into whatever stream comes next.
    import threading

    errors = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        stream = io.StringIO()
        bar = progress.Progress(3, "stage", verbose=2, interval=0.01, stream=stream)
        stream.close()
        bar._thread.join(timeout=5)
        assert not bar._thread.is_alive() and errors == []
    finally:
        threading.excepthook = previous


def test_the_masking_checks_close_their_bar_when_a_check_raises(monkeypatch):
    from tfrobust.evaluation import masking

    opened = []
    real = progress.Progress

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    def boom(*args, **kwargs):
        raise RuntimeError("a check failed")

    monkeypatch.setattr(progress, "Progress", Recording)
    monkeypatch.setattr(masking, "_probabilities", boom)
    import numpy as np
    import keras

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    images, labels = np.random.RandomState(0).rand(8, 4, 4, 1).astype("float32"), np.zeros(8, "int64")
    try:
        masking.model_findings(model, images, labels, eps=0.1, checks=("probabilities",), verbose=2)
    except RuntimeError:
        pass
    assert opened and all(bar._thread is None for bar in opened)
    # Its checks cost too differently (tracing, points left) for a count to estimate the time left.
    assert not any(bar.eta for bar in opened)


def test_an_estimate_of_the_time_left_unless_asked_not_to():
    equal = progress.Progress(2, "checks", "check", verbose=0)
    equal._start -= 10.0
    equal.update(1)
    assert equal.describe().endswith("1/2 checks, 10s elapsed, ETA 10s")
    # The gradient-masking checks: two steps of unrelated cost, where a count would mislead.
    unequal = progress.Progress(2, "checks", "check", verbose=0, eta=False)
    unequal._start -= 10.0
    unequal.update(1)
    assert unequal.describe().endswith("1/2 checks, 10s elapsed")
