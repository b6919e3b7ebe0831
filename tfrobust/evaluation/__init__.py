"""Robustness evaluation: per-example outcomes, tables and JSON reports."""

from tfrobust.evaluation.robustness import WORST_CASE, Report, Result, evaluate, wilson_interval

__all__ = ["Report", "Result", "WORST_CASE", "evaluate", "wilson_interval"]
