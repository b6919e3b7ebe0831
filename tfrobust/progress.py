"""Progress of long stages that reads well on a terminal and in a log file.

On a terminal this is Keras' progress bar. When the output is a pipe or a file
(a job under nohup, `| tee`, CI), a bar's carriage returns turn into one huge
line that appears only at the end, so instead a plain line is printed every
`interval` seconds while the stage runs, even while one slow step is still
being computed, with done/total, the elapsed time and an estimate of the time
left:

    [evaluation] 3/10 batches, 4m12s elapsed, ETA 9m48s
"""

import sys
import threading
import time

import keras

# Seconds between lines in a pipe or file.
DEFAULT_INTERVAL = 30.0


def _duration(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Reports `done` out of `total` steps of a named stage.

    Use as a context manager, calling `update(done)` as steps finish.

    Args:
        total: the number of steps.
        label: the stage's name, printed at the start of each line.
        unit: what a step is ("batch", "point", ...), pluralised with "es"/"s".
        done: steps already finished before this run (a resumed stage); the
            estimate uses only the rate of this run's steps.
        verbose: "auto" (a bar on a terminal, lines otherwise), 1 (bar),
            2 (lines), or 0 (nothing).
        interval: seconds between lines in line mode.
        stream: where lines go (default: standard output).
        eta: print an estimate of the time left (equal steps assumed). False
            for stages whose few steps differ too much in cost for a count to
            predict, such as the gradient-masking checks. Lines only: on a
            terminal, Keras' bar estimates from the count.
    """

    def __init__(self, total, label, unit="batch", done=0, verbose="auto", interval=DEFAULT_INTERVAL, stream=None,
                 eta=True):
        self.total, self.label, self.unit = int(total), label, unit
        self.eta = bool(eta)
        self.stream = stream or sys.stdout
        if verbose == "auto" or verbose is True:
            verbose = 1 if getattr(self.stream, "isatty", lambda: False)() else 2
        self.mode = {0: None, 1: "bar", 2: "lines"}.get(verbose, "lines" if verbose else None)
        self.done = self._start_done = int(done)
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self.interval = float(interval)
        if self.mode == "bar" and self.total:
            self._bar = keras.utils.Progbar(self.total, unit_name=unit)
            if self.done:
                self._bar.update(self.done)
        elif self.mode == "lines" and self.total and self.done < self.total:
            self._line()
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def _units(self):
        plural = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        return self.unit if self.total == 1 else plural

    def describe(self):
        """The current line: `[label] done/total units, elapsed, ETA`."""
        elapsed = time.monotonic() - self._start
        text = f"[{self.label}] {self.done}/{self.total} {self._units()}, {_duration(elapsed)} elapsed"
        if self.done >= self.total:
            return text + ", finished"
        ran = self.done - min(self._start_done, self.total)
        if self.eta and ran > 0:
            return text + f", ETA {_duration(elapsed / ran * (self.total - self.done))}"
        return text

    def _line(self):
        print(self.describe(), file=self.stream, flush=True)

    def _tick(self):
        while not self._stop.wait(self.interval):
            with self._lock:
                try:
                    self._line()
                except (ValueError, OSError):
                    # The stream was closed under us (a caller that never closed this bar): nothing to report to.
                    return

    def update(self, done):
        """Records that `done` steps are finished."""
        with self._lock:
            self.done = int(done)
            if self._bar is not None:
                self._bar.update(self.done)

    def close(self):
        """Stops the periodic lines and prints the last one."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stage(label, stream=None):
    """Prints that a stage without steps of its own starts (a line, in any mode)."""
    print(f"[{label}]", file=stream or sys.stdout, flush=True)


__all__ = ["DEFAULT_INTERVAL", "Progress", "stage"]
