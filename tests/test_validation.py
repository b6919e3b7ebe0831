"""The shared checks of numbers, flags and arrays (tfrobust.validation)."""

import argparse

import numpy as np
import pytest

from tfrobust import validation


@pytest.mark.parametrize("text, value", [("0.3", 0.3), ("8/255", 8 / 255), ("10", 10), (" 2/10 ", 0.2), (0.5, 0.5)])
def test_parse_number_reads_decimals_fractions_and_integers(text, value):
    assert validation.parse_number(text, "eps") == pytest.approx(value)


@pytest.mark.parametrize("text, match", [
    ("8/0", "eps divides by zero"),
    ("inf", "eps must be a finite number"),
    ("nan", "eps must be a finite number"),
    ("-inf", "eps must be a finite number"),
    (float("inf"), "eps must be a finite number"),
    ("abc", "eps must be a number"),
    ("", "eps must be a number"),
])
def test_parse_number_refuses_what_is_not_a_finite_number_naming_the_argument(text, match):
    with pytest.raises(ValueError, match=match):
        validation.parse_number(text, "eps")


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, "n must be an int >= 1. Received: n=0"),
    (-5, ValueError, "n=-5"),
    (2.5, TypeError, "n must be an int"),
    (True, TypeError, "n must be an int"),
    ("3", TypeError, "n must be an int"),
])
def test_check_int_refuses_non_integers_and_values_below_the_minimum(value, error, match):
    with pytest.raises(error, match=match):
        validation.check_int("n", value, minimum=1)


def test_check_int_and_check_number_return_checked_values():
    assert validation.check_int("n", np.int64(3), minimum=1) == 3
    assert validation.check_number("step_size", "2/255", 0.0, inclusive=False) == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        validation.check_number("step_size", 0, 0.0, inclusive=False)
    with pytest.raises(ValueError, match="step_size must be a finite number"):
        validation.check_number("step_size", float("nan"))


def _parse(flag, type_, value):
    parser = argparse.ArgumentParser(prog="tfrobust eval", exit_on_error=False)
    parser.add_argument(flag, type=type_)
    # "--flag=value": argparse would read a separate "-1,1" as an option.
    return getattr(parser.parse_args([f"{flag}={value}"]), flag.lstrip("-").replace("-", "_"))


@pytest.mark.parametrize("type_, value, match", [
    (validation.int_arg(1), "0", "must be an integer >= 1. Received: '0'"),
    (validation.int_arg(1), "-5", "must be an integer >= 1"),
    (validation.int_arg(1), "2.5", "must be an integer"),
    (validation.int_arg(0), "-1", "must be an integer >= 0"),
    (validation.number_arg(), "0", "must be > 0"),
    (validation.number_arg(), "-0.1", "must be > 0"),
    (validation.number_arg(), "8/0", "divides by zero"),
    (validation.number_arg(), "inf", "must be a finite number"),
    (validation.number_arg(), "nan", "must be a finite number"),
    (validation.number_arg(), "abc", "must be a number such as 0.3 or 8/255"),
    (validation.numbers_arg(), "0.3,8/0", "divides by zero"),
    (validation.numbers_arg(), "0.3,-1", "must be > 0"),
    (validation.numbers_arg(), ",", "needs at least one number"),
    (validation.span_arg, "1,-1", "lo < hi"),
    (validation.span_arg, "-1", "two numbers"),
    (validation.shape_arg, "32,32", "H,W,C"),
    (validation.shape_arg, "32,0,3", "integer >= 1"),
])
def test_argparse_types_refuse_bad_values_naming_the_flag(type_, value, match):
    with pytest.raises(argparse.ArgumentError) as e:
        _parse("--opt", type_, value)
    assert "argument --opt" in str(e.value) and match in str(e.value)


def test_argparse_types_return_checked_values(tmp_path):
    assert _parse("--n", validation.int_arg(1), "7") == 7
    assert _parse("--eps", validation.numbers_arg(), "0.3,8/255") == pytest.approx((0.3, 8 / 255))
    assert _parse("--span", validation.span_arg, "-1,1") == (-1.0, 1.0)
    assert _parse("--image-shape", validation.shape_arg, "32,32,3") == (32, 32, 3)
    assert _parse("--data-dir", validation.existing_dir_arg, str(tmp_path)) == str(tmp_path)


def test_a_data_dir_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(argparse.ArgumentError, match="argument --data-dir: .*does not exist"):
        _parse("--data-dir", validation.existing_dir_arg, str(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(argparse.ArgumentError, match="is not a directory"):
        _parse("--data-dir", validation.existing_dir_arg, str(tmp_path / "file"))


@pytest.mark.parametrize("images, error, match", [
    (np.zeros([0, 2, 2, 1], "float32"), ValueError, "images is empty"),
    (np.full([2, 2, 2, 1], np.nan, "float32"), ValueError, "8 NaN or inf values"),
    (np.full([2, 2, 2, 1], 255.0, "float32"), ValueError, "must lie in \\[0, 1\\]"),
    (np.zeros([2, 2, 2], "float32"), ValueError, "rank 4"),
    (np.zeros([2, 2, 2, 1], "int32"), TypeError, "uint8, or float"),
])
def test_check_image_array_refuses_empty_nan_and_out_of_range_images(images, error, match):
    with pytest.raises(error, match=match):
        validation.check_image_array(images)


def test_check_image_array_accepts_uint8_and_unit_floats():
    validation.check_image_array(np.full([1, 2, 2, 1], 255, "uint8"))
    validation.check_image_array(np.ones([1, 2, 2, 1], "float32"))
