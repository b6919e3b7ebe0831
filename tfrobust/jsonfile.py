"""Result files as strict JSON."""

import json
import math
import os


def finite_or_null(data):
    """`data` with every non-finite float (NaN, inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_null(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_null(v) for v in data]
    return data


def write(path, data, indent=2):
    """Writes `data` to `path` as strict JSON, creating the directory.

    Undefined numbers (the spread of a single seed, an empty class) become
    null: Python's NaN token is not JSON, and strict readers (jq, JavaScript)
    refuse the whole file. The file is written under a temporary name and
    renamed into place, so a reader never sees half of it.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(finite_or_null(data), f, indent=indent, allow_nan=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
