"""benchmarks/profile_step.py: op time of the training step by op type and phase, from TF's profiler."""

import json

import pytest

from tests import helpers


@pytest.fixture(scope="module")
def profile_step():
    return helpers.load_benchmark("profile_step")


def test_op_type_drops_onednn_kernel_prefixes(profile_step):
    assert profile_step.op_type("_MklNativeFusedConv2D") == "FusedConv2D"
    assert profile_step.op_type("_MklConv2DBackpropInput") == "Conv2DBackpropInput"
    assert profile_step.op_type("_FusedMatMul") == "FusedMatMul"
    assert profile_step.op_type("Relu") == "Relu"


def test_profile_splits_op_time_between_the_attack_loop_and_the_rest(profile_step, tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert profile_step.main(["--steps", "2", "--batch-size", "8", "--warmup", "1", "--iters", "1",
                              "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    ops = {(o["phase"], o["op"]): o["share"] for o in report["ops"]}
    assert sum(ops.values()) == pytest.approx(1, abs=1e-3)
    # The attack's input gradients run in its loop; the weight gradients only in the training pass.
    assert ops[("attack", "Conv2DBackpropInput")] > 0 and ("attack", "Conv2DBackpropFilter") not in ops
    assert ops[("rest", "Conv2DBackpropFilter")] > 0
    # The eager call of the whole step spans its ops and must not be counted as one.
    assert not any("inference" in op or " " in op for _, op in ops)
    assert report["command"].startswith("python benchmarks/profile_step.py --steps 2")
    assert "| attack | Conv2DBackpropInput |" in capsys.readouterr().out


def test_profile_rejects_zero_profiled_steps(profile_step, capsys):
    with pytest.raises(SystemExit) as e:
        profile_step.main(["--iters", "0"])
    assert e.value.code == 2 and "--iters must be at least 1" in capsys.readouterr().err
