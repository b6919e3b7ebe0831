"""Checks of user input shared by the command line and the Python API.

A number is checked for its type, its range and its finiteness, and the
message names the argument (or, on the command line, the flag) that was wrong.
Nothing is replaced by a default: an option left out is `None` and takes its
default, an option given is checked, so `--n 0` is an error rather than "the
recipe's n".

The functions ending in `_arg` are `type=` functions for `argparse`: they raise
`argparse.ArgumentTypeError`, which argparse turns into a one-line usage error
that names the flag (`tfrobust eval: error: argument --n: ...`).

This module imports neither TensorFlow nor Keras, so that the command line can
check its flags before it loads them. The checks of image and label tensors
(which also hold inside `tf.function`) live in `tfrobust.attacks.base`.
"""

import argparse
import fractions
import math
import os

import numpy as np


def _parse(text):
    """(value, None) for a finite number such as "0.3", "8/255" or "10"; (None, what is wrong) otherwise."""
    if isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        try:
            if "/" in raw:
                value = float(fractions.Fraction(raw))
            else:
                try:
                    value = int(raw)
                except ValueError:
                    value = float(raw)
        except ZeroDivisionError:
            return None, "divides by zero"
        except ValueError:
            return None, "must be a number such as 0.3 or 8/255"
    if not math.isfinite(value):
        return None, "must be a finite number"
    return value, None


def parse_number(text, name):
    """Parses "0.3", "8/255" or "10" into a finite float or int.

    Args:
        text: str (or a number, returned checked).
        name: str, the argument or flag named in the error.

    Returns:
        An int for an integer literal, else a float.

    Raises:
        ValueError: not a number, a fraction with a zero denominator, inf or
            nan; the message names `name`.
    """
    value, wrong = _parse(text)
    if wrong:
        raise ValueError(f"{name} {wrong}. Received: {name}={text!r}")
    return value


def check_int(name, value, minimum=None):
    """`value` as an int, checked: an integer (not a bool, not 2.5) and >= `minimum`.

    Args:
        name: str, the argument named in the error.
        value: the value to check.
        minimum: int or None, the smallest value allowed.

    Returns:
        An int.

    Raises:
        TypeError: `value` is not an integer.
        ValueError: `value` is below `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_number(name, value, minimum=None, inclusive=True):
    """`value` as a finite float, checked against `minimum`.

    Args:
        name: str, the argument named in the error.
        value: an int or float, or a string such as "8/255".
        minimum: float or None, the bound below.
        inclusive: whether `minimum` itself is allowed (False: `value > minimum`).

    Returns:
        A float.

    Raises:
        TypeError: `value` is neither a number nor a string.
        ValueError: not finite, not a number, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, str)):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
    number = float(parse_number(value, name))
    if minimum is not None and (number < minimum if inclusive else number <= minimum):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {bound} {minimum:g}. Received: {name}={value!r}")
    return number


# --- argparse `type=` functions -------------------------------------------------------------------------------


def _arg_number(text):
    """`_parse` for argparse: argparse names the flag itself ("argument --eps: ..."), so the message does not."""
    value, wrong = _parse(text)
    if wrong:
        raise argparse.ArgumentTypeError(f"{wrong}. Received: {text!r}")
    return value


def int_arg(minimum=1):
    """A `type=` function: an integer >= `minimum` (default 1)."""

    def parse(text):
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer. Received: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}. Received: {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def number_arg(minimum=0.0, inclusive=False):
    """A `type=` function: a finite number (fractions such as 8/255 too) above `minimum` (default: > 0)."""

    def parse(text):
        value = float(_arg_number(text))
        if value < minimum if inclusive else value <= minimum:
            bound = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g}. Received: {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def numbers_arg(minimum=0.0, inclusive=False):
    """A `type=` function: comma-separated finite numbers above `minimum` (default: > 0), e.g. "0.3,8/255"."""
    one = number_arg(minimum, inclusive)

    def parse(text):
        items = [t for t in str(text).split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"needs at least one number. Received: {text!r}")
        return tuple(one(t) for t in items)

    parse.__name__ = "numbers"
    return parse


def span_arg(text):
    """A `type=` function: "lo,hi", two finite numbers with lo < hi."""
    items = [t for t in str(text).split(",")]
    if len(items) != 2:
        raise argparse.ArgumentTypeError(f"must be two numbers lo,hi such as -1,1. Received: {text!r}")
    lo, hi = (float(_arg_number(t)) for t in items)
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"must be lo,hi with lo < hi. Received: {text!r}")
    return lo, hi


def shape_arg(text):
    """A `type=` function: an image shape "H,W,C" of three integers >= 1."""
    one = int_arg(1)
    items = str(text).split(",")
    if len(items) != 3:
        raise argparse.ArgumentTypeError(f"must be H,W,C such as 32,32,3. Received: {text!r}")
    return tuple(one(t) for t in items)


def existing_dir_arg(text):
    """A `type=` function: a directory that exists (returned as given)."""
    if not os.path.isdir(text):
        what = "is not a directory" if os.path.exists(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}.")
    return text


# --- arrays ---------------------------------------------------------------------------------------------------


def check_image_array(images, name="images"):
    """Checks a NumPy batch of images: non-empty NHWC, uint8, or float in [0, 1] without NaN or inf.

    Args:
        images: array-like `[N, H, W, C]`.
        name: str, the argument named in the error.

    Returns:
        The images as a NumPy array (not copied when already one).

    Raises:
        TypeError: neither uint8 nor float.
        ValueError: empty, not rank 4, not finite or outside [0, 1].
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{name} must be NHWC, rank 4. Received: {name}.shape={images.shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: there is nothing to evaluate. Received: {name}.shape={images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"{name} must be uint8, or float in [0, 1]. Received: {name}.dtype={images.dtype}")
    finite = np.isfinite(images)
    if not finite.all():
        raise ValueError(f"{name} must be finite pixel values in [0, 1]. "
                         f"Received: {name} with {int(images.size - finite.sum())} NaN or inf values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (divide uint8 pixels by 255). "
                         f"Received: {name} with min={lo:.4g}, max={hi:.4g}")
    return images
