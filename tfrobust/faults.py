"""Named points where fault-injection tests kill the process, inside every write that must survive a kill."""

import os
import signal

KILL_ENV = "TFROBUST_TEST_KILL_AT"
_counts = {}


def kill_point(name):
    """SIGKILLs this process here when TFROBUST_TEST_KILL_AT="name" (or "name#k": the k-th time it is reached).

    A test hook: unset (always, outside tests) it does nothing, so that the
    tests can land a kill between any two steps of a write and check that the
    same command, run again, loses nothing.
    """
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    target, _, count = wanted.partition("#")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
