"""Robustness evaluation: per-example outcomes, tables and JSON reports."""

from tfrobust.evaluation.robustness import WORST_CASE, Report, Result, evaluate, saved_outcomes, wilson_interval

__all__ = ["Report", "Result", "WORST_CASE", "evaluate", "saved_outcomes", "wilson_interval"]
