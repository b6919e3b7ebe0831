import json
import math

import numpy as np
import pytest

from tfrobust import cli
from tfrobust.evaluation import compare


def test_student_t_against_tabulated_values():
    # Quantiles from standard t tables.
    assert compare.t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert compare.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert compare.t_quantile(0.975, 30) == pytest.approx(2.042272, abs=1e-5)
    assert compare.t_sf2(2.0, 10) == pytest.approx(0.073388, abs=1e-5)
    assert compare.t_sf2(0.0, 3) == pytest.approx(1.0)
    # Non-integer df (Welch), large df tends to the normal.
    assert compare.t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-4)
    assert compare.t_sf2(1.5, 7.5) == pytest.approx(2 * (1 - 0.91262), abs=2e-3)


def test_mean_interval_is_mean_plus_minus_t_se():
    mean, std, (lo, hi) = compare.mean_interval([0.60, 0.62, 0.64])
    assert mean == pytest.approx(0.62) and std == pytest.approx(0.02)
    assert hi - mean == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert mean - lo == pytest.approx(hi - mean)


def test_welch_and_paired_tests():
    a, b = [0.50, 0.52, 0.54], [0.51, 0.53, 0.55]
    # Unpaired: a shift of 1 point against a 2-point spread is not significant.
    d = compare.difference(a, b)
    assert d["test"] == "Welch t" and d["diff"] == pytest.approx(0.01)
    assert d["p"] == pytest.approx(compare.t_sf2(0.01 / math.sqrt(2 * 0.0004 / 3), 4.0), rel=1e-6)
    assert d["p"] > 0.05
    # Paired by seed, the same shift is identical in every seed: the spread between seeds cancels.
    b_noisy = [0.511, 0.529, 0.551]
    d = compare.difference(a, b_noisy, seeds_a=[0, 1, 2], seeds_b=[0, 1, 2])
    assert d["test"] == "paired t" and d["p"] < 0.05 and d["ci95"][0] > 0
    # Pairing follows the seeds, not the order of the lists.
    d2 = compare.difference(a, b_noisy[::-1], seeds_a=[0, 1, 2], seeds_b=[2, 1, 0])
    assert d2["p"] == pytest.approx(d["p"])


def _run(tmp_path, name, seed, clean, pgd):
    run = tmp_path / name
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"data": {"seed": seed}}))
    (run / "eval.json").write_text(json.dumps({"clean_accuracy": clean, "results": [
        {"attack": "pgd", "norm": "linf", "eps": 8 / 255, "accuracy": pgd},
        {"attack": "pgd", "norm": "linf", "eps": 16 / 255, "accuracy": pgd / 3}]}))
    return str(run)


def test_compare_cli_reads_runs_by_glob_and_reports_significance(tmp_path, capsys):
    for s, (c, r) in enumerate([(0.80, 0.40), (0.82, 0.41), (0.81, 0.39)]):
        _run(tmp_path, f"none_s{s}", s, c, r)
    for s, (c, r) in enumerate([(0.85, 0.401), (0.871, 0.411), (0.859, 0.39)]):
        _run(tmp_path, f"fixed_s{s}", s, c, r)
    out = str(tmp_path / "cmp.json")
    assert cli.main(["compare", f"none={tmp_path}/none_s*", f"fixed={tmp_path}/fixed_s*", "--json", out]) == 0
    result = json.load(open(out))
    assert result["metrics"] == ["clean", "pgd linf 0.0313725", "pgd linf 0.0627451"]
    assert result["groups"]["none"]["seeds"] == [0, 1, 2]
    assert result["groups"]["fixed"]["clean"]["mean"] == pytest.approx(np.mean([0.85, 0.871, 0.859]))
    clean = result["differences"]["fixed"]["clean"]
    assert clean["test"] == "paired t" and clean["significant"]
    assert not result["differences"]["fixed"]["pgd linf 0.0313725"]["significant"]
    text = capsys.readouterr().out
    assert "Difference from none" in text and "yes" in text and "no" in text
    assert "| pgd linf 8/255 | pgd linf 16/255 |" in text


def test_headers_write_long_radii_as_fractions_of_255_only():
    assert compare._label("pgd linf 0.0313725") == "pgd linf 8/255"
    assert compare._label("pgd l2 0.501961") == "pgd l2 128/255"
    assert compare._label("pgd linf 0.2") == "pgd linf 0.2" and compare._label("pgd l2 1") == "pgd l2 1"
    assert compare._label("clean") == "clean"


def test_evaluations_copied_out_of_their_runs_still_pair_by_seed(tmp_path):
    # Results committed to docs/ keep eval.json but not the run directory: the seed comes from the
    # recipe that `tfrobust eval` records in the evaluation.
    # b lists its seeds in another order: only pairing by seed (not by position) finds the steady +2 points.
    paths = {}
    for name, seeds, values in (("a", [2, 0, 1], [0.50, 0.60, 0.55]), ("b", [0, 1, 2], [0.62, 0.575, 0.52])):
        for seed, v in zip(seeds, values):
            path = tmp_path / f"{name}_s{seed}.json"
            path.write_text(json.dumps({"clean_accuracy": v, "results": [], "trained_with": {"data": {"seed": seed}}}))
            paths.setdefault(name, []).append(str(path))
    result = compare.compare([("a", paths["a"]), ("b", paths["b"])])
    assert result["groups"]["a"]["seeds"] == [2, 0, 1]
    clean = result["differences"]["b"]["clean"]
    assert clean["test"] == "paired t" and clean["significant"]
    assert clean["diff"] == pytest.approx(0.065 / 3) and 0.0 < clean["ci95"][0] < clean["ci95"][1] < 0.035


def test_the_evaluations_own_seed_wins_over_a_recipe_json_beside_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"data": {"seed": 1}}))
    (run / "eval.json").write_text(json.dumps({"clean_accuracy": 0.5, "results": [],
                                               "trained_with": {"data": {"seed": 2}}}))
    with pytest.warns(UserWarning, match="seed 2"):
        assert compare.load_run(str(run)) == ({"clean": 0.5}, 2)


def test_compare_needs_evaluations(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="tfrobust eval"):
        compare.compare([("a", [str(tmp_path / "run")])])
    with pytest.raises(SystemExit, match="NAME=PATHS"):
        cli.main(["compare", str(tmp_path / "run")])


def test_one_run_per_group_reports_the_difference_without_a_test(tmp_path):
    # A row with one seed so far: the difference is real, a p-value is not.
    paths = []
    for name, v in (("a", 0.50), ("b", 0.46)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"clean_accuracy": v, "results": [], "trained_with": {"data": {"seed": 0}}}))
        paths.append((name, [str(path)]))
    result = compare.compare(paths)
    clean = result["differences"]["b"]["clean"]
    assert clean["diff"] == pytest.approx(-0.04) and math.isnan(clean["p"]) and not clean["significant"]
    text = compare.table(result)
    assert "-4.00 (no test: fewer than 2 runs)" in text and "nan" not in text


@pytest.mark.parametrize("seeds", [([0, 1], [0, 1]), (None, None)])
def test_zero_spread_is_no_test_rather_than_p_zero(seeds):
    # Two seeds whose paired differences are both -4.2 points (Suri Linf, session 8), or two constant groups:
    # the t statistic is undefined, not infinite.
    a, b = [0.505, 0.498], [0.463, 0.456]
    if seeds[0] is None:
        a, b = [0.5, 0.5], [0.45, 0.45]
    d = compare.difference(a, b, *seeds)
    assert math.isnan(d["p"]) and d["test"] == "no test: zero spread over 2 runs"
    assert d["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    if seeds[0] is not None:
        # Equal up to float rounding (0.8 - 0.7 != 0.3 - 0.2 in binary) is equal too.
        assert math.isnan(compare.difference([0.7, 0.2], [0.8, 0.3], *seeds)["p"])


def test_a_single_seed_comparison_is_written_as_strict_json(tmp_path):
    # Its std, interval and p are undefined: null in the file, not Python's NaN token, which jq and
    # JavaScript refuse.
    for name, v in (("a", 0.50), ("b", 0.46)):
        _run(tmp_path, f"{name}_s0", 0, v, v / 2)
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", f"a={tmp_path}/a_s*", f"b={tmp_path}/b_s*", "--json", str(out)]) == 0
    text = out.read_text()
    assert "NaN" not in text
    result = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert result["groups"]["a"]["clean"]["std"] is None and result["differences"]["b"]["clean"]["p"] is None
    assert result["differences"]["b"]["clean"]["diff"] == pytest.approx(-0.04)
