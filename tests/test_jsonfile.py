import json
import math

from tfrobust import jsonfile


def test_non_finite_numbers_become_null_at_any_depth(tmp_path):
    path = tmp_path / "sub" / "r.json"
    jsonfile.write(str(path), {"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": {"d": 0.5, "e": "x"}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, [2, None]], "c": {"d": 0.5, "e": "x"}}
