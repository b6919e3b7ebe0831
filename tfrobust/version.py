"""The version of the code that produced a result, for provenance.

`code_version()` is the package version, plus the git commit of the checkout
the package was imported from when there is one (an editable install), plus
".dirty" when the package directory has uncommitted changes: e.g.
"0.1.0+g716713e" or "0.1.0+g716713e.dirty". Results record it beside their
command, so a number can be traced to the code that printed it.
"""

import functools
import os
import subprocess

# The release version; setup reads it from here without importing the package.
__version__ = "0.1.0"


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _git(*args, cwd):
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def code_version(package_dir=PACKAGE_DIR):
    """`__version__`, with `+g<commit>[.dirty]` when `package_dir` is inside a git checkout."""
    commit = _git("rev-parse", "--short", "HEAD", cwd=package_dir)
    if not commit:
        return __version__
    dirty = _git("status", "--porcelain", "--", ".", cwd=package_dir)
    return f"{__version__}+g{commit}" + (".dirty" if dirty else "")


__all__ = ["code_version"]
