"""The AutoAttack parity harness: the comparison, the worker protocol and the torch adapter.

Everything except the adapter test runs without torch or the reference: the
reference's side is a stub.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers


@pytest.fixture(scope="module")
def harness():
    return helpers.load_benchmark("autoattack_reference")


def _robust(n, broken):
    out = np.ones(n, bool)
    out[list(broken)] = False
    return out


def test_compare_counts_disagreements_both_ways(harness):
    ours = _robust(10, [0, 1, 2])
    theirs = _robust(10, [1, 2, 3, 4])  # breaks 3 and 4, which tfrobust calls robust
    c = harness.compare(ours, theirs, 20.0, 50.0)
    assert c["n"] == 10
    assert c["tfrobust_accuracy"] == pytest.approx(0.7) and c["reference_accuracy"] == pytest.approx(0.6)
    assert c["accuracy_gap"] == pytest.approx(0.1)
    assert c["tfrobust_only"] == [3, 4] and c["reference_only"] == [0]
    assert c["speed_ratio"] == pytest.approx(2.5)
    assert not c["targets"]["accuracy"]["holds"] and not c["targets"]["tfrobust_only"]["holds"]
    assert not c["all_targets_hold"]
    json.dumps(c)  # JSON-ready


@pytest.mark.parametrize("ours_broken, theirs_broken, accuracy_holds, missed_holds", [
    ([], [], True, True),
    # n = 400: 0.5 points and 0.5% of n are both 2 points.
    (range(8), range(10), True, True),         # tfrobust 2 points higher, 2 missed: at the tolerances
    (range(7), range(10), False, False),       # 3 points higher, 3 missed
    (range(3, 13), range(10), True, False),    # equal accuracies, yet 3 missed
    (range(100), range(90, 102), True, True),  # tfrobust much stronger, 2 missed
    (range(100), range(97, 103), True, False),  # much stronger, yet 3 missed
])
def test_compare_targets_at_their_boundaries(harness, ours_broken, theirs_broken, accuracy_holds, missed_holds):
    c = harness.compare(_robust(400, ours_broken), _robust(400, theirs_broken), 1.0, 1.0)
    assert c["targets"]["accuracy"]["holds"] is accuracy_holds
    assert c["targets"]["tfrobust_only"]["holds"] is missed_holds
    assert c["all_targets_hold"] is (accuracy_holds and missed_holds)
    assert c["tfrobust_only"] == sorted(set(theirs_broken) - set(ours_broken))


@pytest.mark.parametrize("ours, theirs, t_ours, t_theirs", [
    (np.ones(3, bool), np.ones(4, bool), 1.0, 1.0),
    (np.ones(3), np.ones(3, bool), 1.0, 1.0),
    (np.ones((3, 1), bool), np.ones((3, 1), bool), 1.0, 1.0),
    (np.ones(0, bool), np.ones(0, bool), 1.0, 1.0),
    (np.ones(3, bool), np.ones(3, bool), 0.0, 1.0),
])
def test_compare_rejects_bad_input(harness, ours, theirs, t_ours, t_theirs):
    with pytest.raises(ValueError):
        harness.compare(ours, theirs, t_ours, t_theirs)


def test_table_names_the_missed_points_and_a_failed_target(harness):
    text = harness.table(harness.compare(_robust(4, []), _robust(4, [2]), 1.0, 2.0))
    assert "FAILS" in text and "[2]" in text and "100.00%" in text and "75.00%" in text


def _stub_worker(tmp_path, robust, clean, code=0):
    """A command that plays the reference worker: writes its JSON (no torch, no reference)."""
    out = str(tmp_path / "reference.json")
    payload = {"robust": robust, "clean": clean, "seconds": 7.0, "max_distance": 0.3, "finite": True,
               "log": ["robust accuracy: 50.00%"], "torch": "stub", "torch_threads": 2,
               "python": "stub", "package_dir": str(tmp_path / "autoattack")}
    script = (f"import json, os, sys; json.dump({payload!r}, open({out!r}, 'w'));"
              f"sys.stderr.write(os.environ['PYTHONPATH']); sys.exit({code})")
    return [sys.executable, "-c", script], out


def test_run_reference_reads_the_worker_and_reports_its_failure(harness, tmp_path):
    command, out = _stub_worker(tmp_path, [True, False], [True, True])
    result = harness.run_reference(command, out)
    assert result["robust"].tolist() == [True, False] and result["robust"].dtype == bool
    assert result["seconds"] == 7.0
    command, out = _stub_worker(tmp_path, [True], [True], code=3)
    with pytest.raises(RuntimeError, match="exit 3"):
        harness.run_reference(command, out)


def test_worker_command_round_trips_through_the_parser(harness):
    command = harness.worker_command("py", "m", "p.npz", "o.json", 8 / 255, "Linf", "standard", 0, 100, 16)
    args = harness.parse_args(command[2:])
    assert args.worker and args.eps == 8 / 255 and args.quantise == 16 and args.batch_size == 100


@pytest.mark.parametrize("text, value", [("0.3", 0.3), ("8/255", 8 / 255)])
def test_eps_parses_numbers_and_fractions(harness, text, value):
    assert harness.parse_eps(text) == value


@pytest.mark.parametrize("text", ["0", "-1/255", "8/0", "eight"])
def test_eps_rejects_what_is_not_a_positive_number(harness, text):
    with pytest.raises(harness.argparse.ArgumentTypeError):
        harness.parse_eps(text)


def test_main_writes_both_sides_and_lists_the_missed_points(harness, tmp_path, monkeypatch, capsys):
    from tfrobust import data

    monkeypatch.setattr(data, "load", helpers.fake_split(n_test=6))
    monkeypatch.setattr(harness, "load_model", lambda path, quantise=None: object())
    seen = {}

    def stub_tfrobust(classifier, images, labels, eps, norm, version, batch_size, seed):
        seen["images"] = images
        return {"robust": _robust(4, [0, 1]), "clean": _robust(4, [0]), "seconds": 2.0, "after": {},
                "attack": {"name": "autoattack"}, "warnings": []}

    def stub_reference(command, out):
        seen["command"] = command
        with np.load(command[command.index("--points") + 1]) as z:
            seen["points"] = z["images"]
        return {"robust": _robust(4, [1, 3]), "clean": _robust(4, [0]), "seconds": 8.0, "max_distance": 0.3,
                "finite": True, "log": [], "torch": "stub", "torch_threads": 2, "python": "stub",
                "package_dir": "nowhere"}

    monkeypatch.setattr(harness, "run_tfrobust", stub_tfrobust)
    monkeypatch.setattr(harness, "run_reference", stub_reference)
    path = str(tmp_path / "out.json")
    assert harness.main(["--model", "m", "--dataset", "mnist", "--eps", "0.3", "--norm", "Linf", "--n", "4",
                         "--json", path]) == 0
    result = json.load(open(path))
    # Both sides saw the same first n points, in [0, 1].
    np.testing.assert_array_equal(seen["points"], seen["images"])
    assert seen["images"].shape == (4, 28, 28, 1) and seen["images"].max() <= 1.0
    assert result["robust"] == {"tfrobust": [0, 0, 1, 1], "reference": [1, 0, 1, 0]}
    assert result["comparison"]["tfrobust_only"] == [3]
    assert result["comparison"]["speed_ratio"] == pytest.approx(4.0)
    assert result["clean"]["disagreements"] == []
    assert result["eps"] == 0.3 and result["norm"] == "Linf" and "--n 4" in result["command"]
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch"] == "stub"
    assert "[3]" in capsys.readouterr().out


def test_tfrobust_outcomes_can_come_from_an_earlier_evaluations_state(harness, tmp_path, monkeypatch, capsys):
    from tfrobust import data
    from tfrobust.attacks import registry
    from tfrobust.attacks.autoattack import AutoAttack
    from tfrobust.evaluation import evaluate

    real_build = registry.build
    # The standard ensemble, shortened for a test, on both sides of the check.
    monkeypatch.setattr(registry, "build", lambda name, eps, norm, **kw: AutoAttack(
        eps, norm=norm, steps=1, target_classes=1, queries=5) if name == "autoattack" else real_build(
        name, eps, norm, **kw))
    monkeypatch.setattr(data, "load", helpers.fake_split(n_test=6))
    test = data.load("mnist", "test")
    model = helpers.tiny_classifier(input_shape=(28, 28, 1), num_classes=10, batch_norm=False)
    model_path = str(tmp_path / "m.keras")
    model.save(model_path)
    state = str(tmp_path / "state")
    # What `tfrobust eval --state-dir` keeps: every point correct, so the cascade decides.
    labels = np.argmax(model(test.images.astype("float32") / 255.0), -1)
    monkeypatch.setattr(data, "load", lambda *a, **k: data.Split(test.images, labels, test.info, "synthetic"))
    report = evaluate(model, test.images, labels, [registry.build("autoattack", 0.3, "linf")],
                      batch_size=3, verbose=0, checks=False, state_dir=state)

    def stub_reference(command, out):
        return {"robust": _robust(4, [0]), "clean": np.ones(4, bool), "seconds": 8.0, "max_distance": 0.3,
                "finite": True, "log": [], "torch": "stub", "torch_threads": 2, "python": "stub",
                "package_dir": "nowhere"}

    monkeypatch.setattr(harness, "run_reference", stub_reference)
    monkeypatch.setattr(harness, "run_tfrobust", None)  # must not run
    path = str(tmp_path / "out.json")
    args = ["--model", model_path, "--dataset", "mnist", "--eps", "0.3", "--norm", "Linf", "--n", "4",
            "--tfrobust-state", state, "--json", path]
    assert harness.main(args) == 0
    result = json.load(open(path))
    assert result["robust"]["tfrobust"] == report.result("autoattack").robust[:4].astype(int).tolist()
    assert result["comparison"]["tfrobust_seconds"] is None and result["comparison"]["speed_ratio"] is None
    assert result["order"].startswith("tfrobust read from " + state)
    assert set(result["tfrobust"]["after"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    assert "not timed" in capsys.readouterr().out
    assert "from the evaluation" in harness.summary([result])
    # A state that does not fit is one line naming the flag.
    other = str(tmp_path / "other.keras")
    helpers.tiny_classifier(input_shape=(28, 28, 1), num_classes=10, batch_norm=False, seed=2).save(other)
    os.remove(os.path.join(state, "batch_000001.npz"))  # an unfinished evaluation: 3 of 6 points
    for wrong, match in ((["--eps", "0.1"], "holds no standard autoattack at Linf eps=0.1 (its autoattack differs "
                                            "in: components, eps)"),
                         (["--model", other], "belongs to another evaluation (model"),
                         (["--model", str(tmp_path / "missing")], "No run directory"),
                         ([], "has finished 3 points, fewer than --n 4")):
        assert harness.main(args + wrong) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --tfrobust-state ") and match in err and "\n" not in err
    os.remove(os.path.join(state, "batch_000000.npz"))  # just started: no batch finished
    assert harness.main(args) == 2 and "has finished 0 points" in capsys.readouterr().err
    # A state of a shortened ensemble is not the reference's standard version.
    monkeypatch.setattr(registry, "build", real_build)
    assert harness.main(args) == 2
    assert "differs in: components, queries, steps, target_classes" in capsys.readouterr().err


def _log(stages, initial=100.0):
    lines = ["using standard version including apgd-ce, apgd-t, fab-t, square.", f"initial accuracy: {initial:.2f}%"]
    return lines + [f"robust accuracy after {name.upper()}: {acc:.2f}% (total time 1.0 s)" for name, acc in stages]


def test_all_stages_fills_in_what_the_reference_stops_logging(harness):
    full = _log([("apgd-ce", 60), ("apgd-t", 50), ("fab-t", 50), ("square", 40)])
    assert harness.all_stages(full) == pytest.approx({"apgd-ce": .6, "apgd-t": .5, "fab-t": .5, "square": .4})
    broken = _log([("apgd-ce", 0)], initial=70.0)
    assert harness.all_stages(broken) == {"apgd-ce": 0.0, "apgd-t": 0.0, "fab-t": 0.0, "square": 0.0}
    nothing_correct = _log([], initial=0.0)
    assert harness.all_stages(nothing_correct) == {"apgd-ce": 0.0, "apgd-t": 0.0, "fab-t": 0.0, "square": 0.0}


def test_the_reference_runs_in_chunks_that_survive_a_kill(harness, tmp_path, monkeypatch, capsys):
    from tfrobust import data

    monkeypatch.setattr(data, "load", helpers.fake_split(n_test=6))
    monkeypatch.setattr(harness, "load_model", lambda path, quantise=None: object())
    monkeypatch.setattr(harness, "run_tfrobust", lambda *a: {
        "robust": _robust(5, [0]), "clean": np.ones(5, bool), "seconds": 3.0,
        "after": {"apgd-ce": 0.8, "apgd-t": 0.8, "fab-t": 0.8, "square": 0.8},
        "attack": {"name": "autoattack"}, "warnings": []})
    calls = []

    def stub_reference(command, out):
        with np.load(command[command.index("--points") + 1]) as z:
            n = len(z["labels"])
        calls.append(n)
        if len(calls) == 2 and fail:
            raise RuntimeError("killed")
        # Chunk of 2: one broken by APGD-CE; the last chunk (1 point): broken, nothing logged after.
        log = _log([("apgd-ce", 50), ("apgd-t", 50), ("fab-t", 50), ("square", 50)]) if n == 2 else \
            _log([("apgd-ce", 0)])
        # The first chunk stands for one made before the worker timed its repeated forwards.
        timed = {} if len(calls) == 1 and fail else {"repeated_forward_seconds": 4.0 * n}
        return {"robust": _robust(n, [0]), "clean": np.ones(n, bool), "seconds": 10.0 * n, "max_distance": 0.1 * n,
                "finite": True, "log": log, "torch": "stub", "torch_threads": 2, "python": "stub",
                "package_dir": "nowhere", **timed}

    monkeypatch.setattr(harness, "run_reference", stub_reference)
    state, path = str(tmp_path / "ref_state"), str(tmp_path / "out.json")
    args = ["--model", "m", "--dataset", "mnist", "--eps", "0.3", "--norm", "Linf", "--n", "5", "--chunk", "2",
            "--state-dir", state, "--json", path]
    fail = True
    with pytest.raises(RuntimeError, match="killed"):
        harness.main(args)
    fail = False
    calls.clear()
    assert harness.main(args) == 0
    assert calls == [2, 1]  # the first chunk was kept
    result = json.load(open(path))
    assert result["robust"]["reference"] == [0, 1, 0, 1, 0]
    assert result["comparison"]["reference_seconds"] == pytest.approx(50.0)
    assert result["reference"]["chunks"] == [2, 2, 1] and result["reference"]["max_distance"] == pytest.approx(0.2)
    # Stages over all 5 points: 0.5, 0.5 and 0 weighted by 2, 2 and 1.
    assert result["reference"]["stages"] == pytest.approx({k: 0.4 for k in ("apgd-ce", "apgd-t", "fab-t", "square")})
    table = harness.summary([result])
    assert "apgd-ce 80.0 / 40.0, apgd-t 80.0 / 40.0, fab-t 80.0 / 40.0, square 80.0 / 40.0" in table
    # A kept chunk without the repeated forwards' time: no fair ratio, rather than a wrong one.
    assert "| 3 | 50 | 16.67 | - |" in table and result["comparison"]["speed_ratio_fair"] is None
    fresh = str(tmp_path / "fresh.json")
    assert harness.main([a if a != state else str(tmp_path / "ref_state2") for a in args[:-1]] + [fresh]) == 0
    comparison = json.load(open(fresh))["comparison"]
    assert comparison["reference_repeated_forward_seconds"] == pytest.approx(20.0)
    assert comparison["speed_ratio_fair"] == pytest.approx((50.0 - 20.0) / 3.0)
    # Another run's state directory is refused in one line.
    capsys.readouterr()
    assert harness.main([a if a != "0.3" else "0.2" for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --state-dir: ") and "eps" in err and "\n" not in err


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                            GIT_COMMITTER_EMAIL="t@t"))


def test_reference_commit_checks_the_installed_copy(harness, tmp_path):
    source = tmp_path / "source"
    (source / "autoattack").mkdir(parents=True)
    (source / "autoattack" / "autoattack.py").write_text("x = 1\n")
    _git("init", "-q", cwd=source)
    _git("add", ".", cwd=source)
    _git("commit", "-q", "-m", "c", cwd=source)
    installed = tmp_path / "site" / "autoattack"
    installed.mkdir(parents=True)
    (installed / "autoattack.py").write_text("x = 1\n")
    info = harness.reference_commit(str(source / ".git"), str(installed))
    assert len(info["commit"]) == 40 and info["installed_matches_commit"]
    (installed / "autoattack.py").write_text("x = 2\n")
    info = harness.reference_commit(str(source / ".git"), str(installed))
    assert not info["installed_matches_commit"] and info["differing_files"] == ["autoattack.py"]


def test_quantised_model_has_no_input_gradient(harness):
    model = helpers.tiny_classifier(batch_norm=False)
    wrapped = harness.Quantised(model, 4)
    x = tf.constant(helpers.toy_data(4)[0])
    np.testing.assert_allclose(wrapped(x).numpy(), model(tf.round(x * 3.0) / 3.0).numpy(), atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = wrapped(x)
    grad = tape.gradient(logits, x)
    assert grad is None or not np.any(grad.numpy())
    with pytest.raises(ValueError, match="levels"):
        harness.Quantised(model, 1)


def test_torch_adapter_gives_tensorflows_logits_and_gradients(harness):
    torch = pytest.importorskip("torch")
    model = helpers.tiny_classifier(input_shape=(6, 5, 2), num_classes=4, batch_norm=False)
    x, _, _ = helpers.toy_data(3, shape=(6, 5, 2))
    weights = np.random.RandomState(0).randn(3, 4).astype("float32")
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        logits = model(xt, training=False)
        weighted = tf.reduce_sum(logits * weights)
    expected_grad = tape.gradient(weighted, xt).numpy().transpose(0, 3, 1, 2)
    expected_jacobian = tape.batch_jacobian(logits, xt).numpy().transpose(0, 1, 4, 2, 3)

    module = harness.torch_adapter(model, (6, 5, 2))
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    out = module(x_torch)
    np.testing.assert_allclose(out.detach().numpy(), logits.numpy(), rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad((out * torch.from_numpy(weights)).sum(), x_torch, retain_graph=True)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-5, atol=1e-6)
    # FAB's way: one backward per class through the same graph.
    for k in range(4):
        mask = torch.zeros_like(out)
        mask[:, k] = 1.0
        x_torch.grad = None
        out.backward(mask, retain_graph=True)
        np.testing.assert_allclose(x_torch.grad.numpy(), expected_jacobian[:, k], rtol=1e-5, atol=1e-6)
    # Every backward pass (1 + 4 above) repeated one forward pass, and the module added up their times.
    assert module.repeated_forward_seconds > 0
    before = module.repeated_forward_seconds
    with torch.no_grad():
        module(x_torch)
    assert module.repeated_forward_seconds == before  # a forward without backward repeats nothing
    # The reference's rounding just outside the box is clipped; a real excursion is refused.
    edge = torch.from_numpy(np.clip(x.transpose(0, 3, 1, 2), 0.0, 1.0).copy())
    edge[:, :, 0, :] = 1.0
    np.testing.assert_allclose(module(edge + 5e-7 * (edge == 1.0)).detach().numpy(), module(edge).detach().numpy())
    with pytest.raises(ValueError, match="outside"):
        module(edge + 0.01)


def test_summary_reads_the_reference_stages_and_each_side(harness):
    comparison = harness.compare(np.array([True, True, False, True]), np.array([True, False, False, True]), 2.0, 6.0)
    result = {
        "model": "saved_models/m/1", "quantise": 256, "eps": 8 / 255, "norm": "Linf", "comparison": comparison,
        "clean": {"tfrobust": [1, 1, 1, 0]},
        "reference": {"log": ["initial accuracy: 75.00%", "robust accuracy after APGD-CE: 75.00% (total time 1 s)",
                              "robust accuracy after SQUARE: 50.00% (total time 3 s)"]},
        "tfrobust": {"after": {"apgd-ce": 0.75, "apgd-t": 0.75, "square": 0.75}},
    }
    assert harness.reference_stages(result["reference"]["log"]) == {"apgd-ce": 0.75, "square": 0.5}
    row = harness.summary([result]).splitlines()[-1]
    assert row.startswith("| `saved_models/m/1 quantised to 256 levels` | Linf 8/255 | 4 | 75.0 | 75.0 | 50.0 | +25.0 | 1 |")
    assert "apgd-ce 75.0 / 75.0, apgd-t 75.0 / -, square 75.0 / 50.0" in row and row.endswith("| 2 | 6 | 3.00 | - |")
    result["comparison"] = harness.compare(np.array([True]), np.array([True]), 2.0, 6.0, 1.5)
    assert harness.summary([result]).splitlines()[-1].endswith("| 2 | 6 | 3.00 | 2.25 |")


def test_stage_summary_pairs_each_components_time_with_the_references_own(harness):
    log = ["robust accuracy after APGD-CE: 75.00% (total time 1.5 s)",
           "robust accuracy after APGD-T: 50.00% (total time 4.0 s)"]
    assert harness.reference_stage_seconds(log) == {"apgd-ce": 1.5, "apgd-t": 2.5}
    stages = {"apgd-ce": {"seconds": 3.2, "calls": 2, "points": 8, "first_call_seconds": 2.0},
              "apgd-t": {"seconds": 1.0, "calls": 1, "points": 3, "first_call_seconds": 1.0}}
    result = {"model": "m", "norm": "L2", "eps": 0.5, "comparison": {"n": 4}, "reference": {"log": log},
              "tfrobust": {"stages": stages}}
    rows = harness.stage_summary([result]).splitlines()
    assert rows[2:] == ["| `m` | L2 0.5 | 4 | apgd-ce | 3 (2) | 2 |", "| `m` | L2 0.5 | 4 | apgd-t | 1 (1) | 2 |"]
    # Chunks' logs: each chunk's running total starts again, and the stages add up.
    chunked = ["== chunk 0", *log, "== chunk 1", *log]
    assert harness.reference_stage_seconds(chunked) == {"apgd-ce": 3.0, "apgd-t": 5.0}
    # A component the reference never logged (nothing left to attack) has no reference time; a run without
    # tfrobust's stages has no row.
    result["tfrobust"]["stages"]["square"] = {"seconds": 0.4, "calls": 1, "points": 1, "first_call_seconds": 0.4}
    assert harness.stage_summary([result]).splitlines()[-1] == "| `m` | L2 0.5 | 4 | square | 0 (0) | - |"
    assert harness.stage_summary([{"tfrobust": {}}]) == ""


@pytest.mark.parametrize("repeated", [-1.0, 6.0, 7.0])
def test_compare_rejects_repeated_forwards_outside_the_reference_time(harness, repeated):
    with pytest.raises(ValueError, match="reference_repeated_seconds"):
        harness.compare(np.ones(3, bool), np.ones(3, bool), 1.0, 6.0, repeated)


def test_a_chunk_kept_before_repeated_forwards_were_timed_leaves_their_total_unknown(harness, tmp_path, monkeypatch):
    from tfrobust.stores import BatchStore

    images, labels = np.zeros((3, 2, 2, 1), np.float32), np.zeros(3, np.int64)
    fingerprint = {"model": "m", "n": 3}
    text = {k: np.array("stub", dtype=str) for k in harness._TEXT_FIELDS}
    # A chunk file as the worker wrote it before it timed the repeated forwards: no such key at all.
    BatchStore(str(tmp_path), fingerprint, "reference AutoAttack run").write(
        0, robust=np.ones(2, bool), clean=np.ones(2, bool), seconds=np.float64(5.0), max_distance=np.float64(0.1),
        finite=np.bool_(True), log=np.array(_log([("apgd-ce", 100)]), dtype=str), torch_threads=np.int64(2), **text)
    monkeypatch.setattr(harness, "run_reference", lambda command, out: {
        "robust": np.ones(1, bool), "clean": np.ones(1, bool), "seconds": 4.0, "repeated_forward_seconds": 1.0,
        "max_distance": 0.1, "finite": True, "log": _log([("apgd-ce", 100)]), "torch": "stub", "torch_threads": 2,
        "python": "stub", "package_dir": "stub"})
    merged = harness.run_reference_in_chunks(lambda points, out: ["worker"], images, labels, 2, str(tmp_path),
                                             fingerprint)
    assert merged["seconds"] == pytest.approx(9.0) and merged["repeated_forward_seconds"] is None


def test_native_reference_model_reaches_the_worker_and_the_results(harness, tmp_path, monkeypatch):
    from tfrobust import data

    command = harness.worker_command("py", "m", "p.npz", "o.json", 0.3, "Linf", "standard", 0, 100,
                                     reference_model="native")
    assert harness.parse_args(command[2:]).reference_model == "native"
    # The adapter, the default, adds nothing to the command (chunks made before the choice keep their fingerprint).
    assert "--reference-model" not in harness.worker_command("py", "m", "p", "o", 0.3, "Linf", "standard", 0, 100)
    with pytest.raises(SystemExit):
        harness.parse_args(["--model", "m", "--dataset", "mnist", "--eps", "0.3", "--norm", "Linf",
                            "--reference-model", "native", "--quantise", "16"])

    monkeypatch.setattr(data, "load", helpers.fake_split(n_test=6))
    monkeypatch.setattr(harness, "load_model", lambda path, quantise=None: object())
    monkeypatch.setattr(harness, "run_tfrobust", lambda *a: {
        "robust": _robust(4, [0]), "clean": np.ones(4, bool), "seconds": 2.0, "after": {"apgd-ce": 0.75},
        "attack": {"name": "autoattack"}, "warnings": []})
    commands = []

    def stub_reference(command, out):
        commands.append(command)
        n = len(np.load(command[command.index("--points") + 1])["labels"])
        return {"robust": _robust(n, [0]), "clean": np.ones(n, bool), "seconds": 4.0, "max_distance": 0.3,
                "finite": True, "log": [], "torch": "stub", "torch_threads": 2, "python": "stub",
                "package_dir": "nowhere", "repeated_forward_seconds": 0.0, "reference_model": "native",
                "port_max_abs_difference": 2e-6 * n}

    monkeypatch.setattr(harness, "run_reference", stub_reference)
    common = ["--model", "m", "--dataset", "mnist", "--eps", "0.3", "--norm", "Linf", "--n", "4"]
    path = str(tmp_path / "native.json")
    assert harness.main(common + ["--reference-model", "native", "--json", path]) == 0
    result = json.load(open(path))
    assert commands[-1][commands[-1].index("--reference-model") + 1] == "native"
    assert result["reference"]["model"] == "native" and result["reference"]["port_max_abs_difference"] == 8e-6
    # No adapter, no repeated forwards: the fair ratio is the plain one, and the table says whose model it was.
    assert result["comparison"]["speed_ratio_fair"] == result["comparison"]["speed_ratio"] == pytest.approx(2.0)
    assert harness.summary([result]).splitlines()[-1].startswith("| `m` (reference on the PyTorch port) |")
    # Chunks: the port's largest difference over the chunks; a state of adapter chunks is not continued natively.
    state = str(tmp_path / "state")
    assert harness.main(common + ["--chunk", "2", "--state-dir", state, "--json", path]) == 0
    assert harness.main(common + ["--chunk", "2", "--state-dir", state, "--reference-model", "native",
                                  "--json", path]) == 2
    assert harness.main(common + ["--chunk", "2", "--state-dir", str(tmp_path / "state2"),
                                  "--reference-model", "native", "--json", path]) == 0
    assert json.load(open(path))["reference"]["port_max_abs_difference"] == 4e-6


def test_keras_layers_refuses_a_layer_the_port_does_not_know(harness):
    import keras

    from tfrobust import models

    layers = harness.keras_layers(models.build("resnet20", (32, 32, 3), 10))
    assert layers["architecture"] == "resnet20" and layers["s2b1_proj"]["kernel"].shape == (1, 1, 16, 32)
    assert layers["stem_bn"]["epsilon"] == 1e-5 and set(layers["logits"]) == {"kernel", "bias"}
    odd = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.LayerNormalization()])
    with pytest.raises(ValueError, match="has no PyTorch port: use --reference-model adapter"):
        harness.keras_layers(odd)
