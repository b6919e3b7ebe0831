import json
import os
import re
import sys

import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust import bench, cli


def test_model_flops_counts_convolutions_and_dense_layers():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)          # 8*8*4 outputs x 3*3*3 MACs
    h = keras.layers.Conv2D(6, 1, strides=2)(h)                    # 4*4*6 outputs x 4 MACs
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)         # 4*4*6 outputs x 9 MACs
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(h))     # 96 x 5 MACs
    model = keras.Model(inputs, outputs)
    expected = 2 * (8 * 8 * 4 * 27 + 4 * 4 * 6 * 4 + 4 * 4 * 6 * 9 + 96 * 5)
    assert bench.model_flops(model) == expected


def test_bench_cli_reports_every_figure(tmp_path, capsys):
    out = str(tmp_path / "bench.json")
    args = ["bench", "--model", "wong_cnn", "--image-shape", "28,28,1", "--batch-size", "8", "--steps", "3",
            "--reps", "2", "--warmup", "0", "--iters", "1", "--matmul-n", "128", "--json", out]
    assert cli.main(args) == 0
    report = json.load(open(out))
    figures = report["results"]["tfrobust"]
    for key in ("adv_ips", "clean_ips", "attack_ips", "pipeline_ips", "first_step_s", "peak_rss_mb", "mfu",
                "step_peak_rss_mb", "setup_rss_mb", "step_rss_over_setup_mb"):
        assert figures[key] > 0, key
    assert figures["step_rss_over_setup_mb"] == pytest.approx(figures["step_peak_rss_mb"] - figures["setup_rss_mb"])
    # The PGD step's time over the clean step's, from the two medians (a timing inequality such as "> 1" failed
    # once on a loaded machine: with a model this small, overheads swamp the 3x work).
    assert report["ratios"]["adv_over_clean_time"] == pytest.approx(figures["clean_ips"] / figures["adv_ips"])
    assert report["flops"]["adv_step_per_image"] == 9 * report["flops"]["forward_per_image"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["tensorflow"]
    assert report["spread"]["adv_ips"]["min"] <= figures["adv_ips"] <= report["spread"]["adv_ips"]["max"]
    printed = capsys.readouterr().out
    assert "PGD-3 training step" in printed
    assert report["config"]["attack_precision"] == "float32" and report["flops"]["mfu_against"] == "float32"
    # A wide model's step takes minutes: each stage reports its progress (clean and PGD steps: a first call and
    # 2 repetitions each; the attack alone; the two fresh processes of the memory figures).
    for line in ("[bench: training steps] 6/6 timings", "[bench: the attack alone] 3/3 calls",
                 "[bench: memory, tfrobust] 2/2 fresh processes"):
        assert re.search(re.escape(line) + r", \S+ elapsed, finished\n", printed), line


def test_bench_bfloat16_attack_counts_each_pass_against_its_precision_peak(tmp_path):
    report = bench.run(model_name="wong_cnn", image_shape=(28, 28, 1), batch_size=4, steps=2, reps=1, warmup=0,
                       iters=1, matmul_n=64, attack_precision="bfloat16")
    cfg, flops, r = report["config"], report["flops"], report["results"]["tfrobust"]
    assert (cfg["attack_precision"], cfg["train_precision"]) == ("bfloat16", "float32")
    assert (cfg["attack_computes_in"], cfg["training_computes_in"]) == ("bfloat16", "float32")
    assert flops["mfu_against"] == "attack bfloat16, training float32"
    f32, bf16 = flops["matmul_peak_flops"]["median"], flops["matmul_peak_flops_bfloat16"]["median"]
    assert f32 != bf16  # two measurements; equal medians would let the next line pass with either peak
    expected = r["adv_ips"] * (4 * flops["forward_per_image"] / bf16 + 3 * flops["forward_per_image"] / f32)
    assert r["mfu"] == pytest.approx(expected)
    assert r["clean_mfu"] == pytest.approx(r["clean_ips"] * 3 * flops["forward_per_image"] / f32)


@pytest.mark.parametrize("attack,train,computes,fair", [
    ("float32", "float32", ("float32", "float32"), ("eager", "channels_last", "compile")),
    ("bfloat16", "mixed_bfloat16", ("bfloat16", "bfloat16"), ("channels_last_bf16",)),
    # A mixed_bfloat16 model computes in bfloat16 whatever the attack's own option says.
    ("float32", "mixed_bfloat16", ("bfloat16", "bfloat16"), ("channels_last_bf16",)),
    ("bfloat16", "float32", ("bfloat16", "float32"), ()),
])
def test_fair_torch_configs_compute_in_tfrobusts_precision(attack, train, computes, fair):
    assert bench.compute_precisions(attack, train) == computes
    assert bench.fair_torch_configs(attack, train) == fair


def test_build_classifier_under_the_training_policy_and_restores_the_global_one():
    before = keras.config.dtype_policy().name
    model = bench.build_classifier("wong_cnn", (28, 28, 1), 10, "mixed_bfloat16")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32" for layer in convs)
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="train_precision must be one of"):
        bench.build_classifier("wong_cnn", (28, 28, 1), 10, "mixed_float16")


def test_bench_fgsm_rs_step_counts_one_attack_step():
    report = bench.run(model_name="wong_cnn", image_shape=(28, 28, 1), batch_size=4, steps=7, reps=1, warmup=0,
                       iters=1, matmul_n=64, method="fgsm_rs")
    assert report["config"]["method"] == "fgsm_rs" and report["config"]["attack_steps"] == 1
    assert report["flops"]["adv_step_per_image"] == 5 * report["flops"]["forward_per_image"]
    assert "FGSM-RS training step" in bench.table(report)
    with pytest.raises(ValueError, match="method must be one of"):
        bench.run(model_name="wong_cnn", image_shape=(28, 28, 1), method="trades")


FAKE_WORKER = r'''
import json, sys
# A stand-in for torch_reference.py --serve: fixed seconds per step, so the
# expected ratios follow from tfrobust's own times; requests are logged.
per_step = {"eager": 0.5, "channels_last": 0.25, "compile": 0.4, "channels_last_bf16": 0.2}
log = open(sys.argv[1], "a")
# An optional second argument makes it claim another model than the one asked for.
wrong_model = sys.argv[2] if len(sys.argv) > 2 else None
first = set()
for line in sys.stdin:
    if not line.strip():
        break
    req = json.loads(line)
    log.write(json.dumps(req) + "\n"); log.flush()
    key = req["config"]
    seconds = per_step[key] * req["iters"] * (0.1 if req["kind"] == "clean" else 1)
    print(json.dumps({"seconds": seconds, "first": key not in first, "peak_rss_mb": 123.0, "torch": "fake",
                      "config": key, "model": wrong_model or req["model"], "method": req["method"]}), flush=True)
    first.add(key)
'''


def test_bench_alternates_with_the_reference_worker_and_pairs_ratios(tmp_path):
    script, log = tmp_path / "fake_worker.py", tmp_path / "requests.jsonl"
    script.write_text(FAKE_WORKER)
    reference = bench.TorchReference(command=[sys.executable, str(script), str(log)])
    try:
        report = bench.run(batch_size=2, steps=1, reps=3, warmup=0, iters=1, matmul_n=64, reference=reference)
    finally:
        reference.close()
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    adv = [r["config"] for r in requests if r["kind"] == "adv"]
    # One first call per configuration, then the timed repetitions interleaved, not grouped.
    assert adv == ["eager", "channels_last", "compile"] * 4
    assert all(r["batch"] == 2 and r["steps"] == 1 for r in requests)
    assert all(r["model"] == "resnet20" and r["method"] == "pgd" for r in requests)
    results, ratios, spread = report["results"], report["ratios"], report["spread"]
    assert results["torch_channels_last"]["adv_ips"] == pytest.approx(2 / 0.25)
    assert ratios["torch_best"] == "channels_last"
    assert ratios["adv_vs_torch_best"] == ratios["adv_vs_torch_channels_last"]
    # Pair by pair: the ratio of each repetition is (its torch seconds) / (our seconds).
    for config, per_step in (("eager", 0.5), ("channels_last", 0.25), ("compile", 0.4)):
        s = spread[f"adv_vs_torch_{config}"]
        assert s["min"] <= ratios[f"adv_vs_torch_{config}"] <= s["max"]
        ours = spread["adv_ips"]
        assert s["median"] == pytest.approx(per_step * ours["median"] / 2, rel=1e-6)
    assert report["reference"]["worker_peak_rss_mb"] == 123.0
    assert results["torch_eager"]["step_peak_rss_mb"] is None  # a stand-in worker has no script to run alone
    assert "PyTorch channels_last" in bench.table(report)
    assert ratios["torch_fair"] == "channels_last"  # float32: the float32 configurations are the fair peers
    assert report["config"]["fair_torch_configs"] == ["eager", "channels_last", "compile"]


def test_bench_cli_preact_fgsm_rs_bf16_reaches_the_reference_and_the_report(tmp_path, monkeypatch, capsys):
    script, log, out = tmp_path / "fake_worker.py", tmp_path / "requests.jsonl", tmp_path / "bench.json"
    script.write_text(FAKE_WORKER)
    measured = []

    def fake_step_peak_rss(*args, **kwargs):  # the fresh processes are tested elsewhere; record what they get
        measured.append(kwargs)
        return 100.0 if kwargs.get("iters") == 0 else 300.0

    monkeypatch.setattr(bench, "step_peak_rss", fake_step_peak_rss)
    args = ["bench", "--model", "preact_resnet18", "--method", "fgsm_rs", "--attack-precision", "bfloat16",
            "--train-precision", "mixed_bfloat16", "--batch-size", "2", "--reps", "1", "--warmup", "0",
            "--iters", "1", "--matmul-n", "64", "--reference", "torch",
            "--reference-command", f"{sys.executable} {script} {log}", "--json", str(out)]
    assert cli.main(args) == 0
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    # The default peers of a bfloat16 step are the bfloat16 configurations only.
    assert {(r["config"], r["model"], r["method"]) for r in requests} == {
        ("channels_last_bf16", "preactresnet18", "fgsm_rs")}
    assert all(m["method"] == "fgsm_rs" and m["attack_precision"] == "bfloat16"
               and m["train_precision"] == "mixed_bfloat16" for m in measured) and len(measured) == 2
    report = json.load(open(out))
    cfg = report["config"]
    assert (cfg["model"], cfg["method"], cfg["attack_steps"]) == ("preact_resnet18", "fgsm_rs", 1)
    assert (cfg["attack_precision"], cfg["train_precision"]) == ("bfloat16", "mixed_bfloat16")
    assert cfg["fair_torch_configs"] == ["channels_last_bf16"]
    assert cfg["torch_config_precision"] == {"channels_last_bf16": "bfloat16"}
    assert report["reference"]["model"] == "preactresnet18" and report["reference"]["method"] == "fgsm_rs"
    assert report["ratios"]["torch_fair"] == "channels_last_bf16"
    assert report["flops"]["mfu_against"] == "bfloat16"
    torch_bf16, bf16_peak = report["results"]["torch_channels_last_bf16"], report["flops"]["matmul_peak_flops_bfloat16"]
    assert torch_bf16["precision"] == "bfloat16"
    assert torch_bf16["mfu"] == pytest.approx(torch_bf16["adv_ips"] * 5 * report["flops"]["forward_per_image"]
                                              / bf16_peak["median"])
    printed = capsys.readouterr().out
    assert "FGSM-RS training step" in printed and "PyTorch channels_last_bf16 (fair peer)" in printed


def test_a_worker_that_ran_another_model_is_an_error(tmp_path):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    reference = bench.TorchReference(command=[sys.executable, str(script), str(tmp_path / "log"), "resnet20"])
    try:
        with pytest.raises(RuntimeError, match="ran .*resnet20.* when asked for .*preactresnet18"):
            reference.time("channels_last", "adv", 1, 2, 1, model="preactresnet18", method="fgsm_rs")
    finally:
        reference.close()


def test_bench_reference_needs_a_model_it_implements_and_known_configs(tmp_path):
    with pytest.raises(ValueError, match="reference implements"):
        bench.run(model_name="wong_cnn", image_shape=(28, 28, 1), reference=object())
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    reference = bench.TorchReference(command=[sys.executable, str(script), str(tmp_path / "log")])
    try:
        with pytest.raises(ValueError, match="Unknown PyTorch configurations"):
            bench.run(batch_size=2, steps=1, reps=1, warmup=0, iters=1, reference=reference,
                      reference_configs=["jit"])
    finally:
        reference.close()


def test_a_dead_reference_worker_is_a_clear_error():
    reference = bench.TorchReference(command=[sys.executable, "-c", "import sys; sys.exit('no torch here')"])
    with pytest.raises(RuntimeError, match="pip install torch==2.13.0"):
        reference.time("eager", "adv", 1, 2, 1)


def test_a_small_child_of_a_large_process_reports_its_own_peak():
    # ru_maxrss would report this (large) test process's peak for the child.
    import subprocess

    ballast = np.ones(300 * 2**20 // 8)  # 300 MB held by the parent
    child = subprocess.run([sys.executable, "-c", "from tfrobust import bench; print(bench.peak_rss_mb())"],
                           capture_output=True, text=True, check=True)
    child_mb = float(child.stdout.strip().splitlines()[-1])
    assert bench.peak_rss_mb() > child_mb + 200
    del ballast


def test_memory_only_reports_before_and_with_the_step(tmp_path, capsys):
    out = str(tmp_path / "memory.json")
    args = ["bench", "--memory-only", "--model", "wong_cnn", "--image-shape", "28,28,1", "--batch-size", "64",
            "--steps", "1", "--json", out]
    assert cli.main(args) == 0
    r = json.load(open(out))["results"]["tfrobust"]
    assert 100 < r["setup_rss_mb"] < r["step_peak_rss_mb"]
    assert r["step_rss_over_setup_mb"] == pytest.approx(r["step_peak_rss_mb"] - r["setup_rss_mb"])
    assert "| tfrobust |" in capsys.readouterr().out


def test_memory_only_with_a_stand_in_worker_and_a_model_it_cannot_run(capsys):
    report = {"config": {"model": "resnet20", "batch_size": 2, "pgd_steps": 1},
              "results": {"torch_eager": {"setup_rss_mb": None, "step_peak_rss_mb": None,
                                          "step_rss_over_setup_mb": None}}}
    assert "| PyTorch eager | n/a | n/a | n/a |" in bench.memory_table(report)
    with pytest.raises(ValueError, match="reference implements"):
        bench.memory_report(model_name="wong_cnn", image_shape=(28, 28, 1), reference=object())


@pytest.fixture
def tiny_mnist_run(tmp_path, monkeypatch):
    """A run directory (model.keras, recipe.json) on a 10-class 28x28 stand-in for MNIST."""
    from tfrobust import data
    from tfrobust.attacks import registry
    from tfrobust.attacks.autoattack import AutoAttack
    from tfrobust.config import Recipe

    monkeypatch.setattr(data, "load", helpers.fake_split(n_test=6))
    real_build = registry.build
    # The standard ensemble's 100 steps and 5000 queries are for real runs: one step and five queries here.
    monkeypatch.setattr(registry, "build", lambda name, eps, norm, **kw: AutoAttack(
        eps, norm=norm, steps=1, target_classes=1, queries=5) if name == "autoattack" else real_build(
        name, eps, norm, **kw))
    run = tmp_path / "run"
    run.mkdir()
    helpers.tiny_classifier(input_shape=(28, 28, 1), num_classes=10, batch_norm=False).save(str(run / "model.keras"))
    recipe = Recipe(name="t").override({"data.dataset": "mnist", "attack.eps": 0.3, "attack.norm": "linf"})
    (run / "recipe.json").write_text(json.dumps(recipe.to_dict()))
    return str(run)


def test_bench_eval_times_autoattack_on_the_models_threat_model(tiny_mnist_run, tmp_path, capsys):
    out = str(tmp_path / "eval.json")
    assert cli.main(["bench", "--eval", tiny_mnist_run, "--n", "5", "--json", out]) == 0
    report = json.load(open(out))
    assert report["config"]["eps"] == pytest.approx(0.3) and report["config"]["norm"] == "linf"
    t = report["tfrobust"]
    assert t["img_per_s"] == pytest.approx(5 / t["seconds"]) and 0 <= t["robust_accuracy"] <= t["clean_accuracy"]
    assert "reference" not in report and "| tfrobust autoattack |" in capsys.readouterr().out


def test_bench_eval_runs_the_harness_for_the_reference(tiny_mnist_run, tmp_path, capsys):
    stub = tmp_path / "harness.py"
    # A stand-in for benchmarks/autoattack_reference.py: records its arguments, writes what the harness writes.
    stub.write_text(
        "import json, sys\n"
        "a = sys.argv[1:]\n"
        "get = lambda f: a[a.index(f) + 1]\n"
        f"json.dump({{'argv': a}}, open({str(tmp_path / 'argv.json')!r}, 'w'))\n"
        "json.dump({'comparison': {'n': 5, 'tfrobust_seconds': 2.0, 'reference_seconds': 10.0,\n"
        "           'tfrobust_accuracy': 0.4, 'reference_accuracy': 0.4,\n"
        "           'targets': {'accuracy': {'rule': 'tfrobust accuracy <= reference + 0.5 points', 'holds': True}}},\n"
        "           'clean': {'tfrobust': [1, 1, 1, 0, 1], 'reference': [1, 1, 1, 0, 1]},\n"
        "           'machine': {'cores': 2, 'torch': 'stub'}}, open(get('--json'), 'w'))\n")
    out = str(tmp_path / "eval.json")
    assert cli.main(["bench", "--eval", tiny_mnist_run, "--n", "5", "--reference", "autoattack",
                     "--reference-python", "/some/python", "--reference-script", str(stub), "--json", out]) == 0
    report = json.load(open(out))
    # The reference attacks the PyTorch port of the model by default: the peer its users run.
    argv = json.load(open(tmp_path / "argv.json"))["argv"]
    assert argv[argv.index("--reference-model") + 1] == "native" == report["config"]["reference_model"]
    assert report["ratio"] == pytest.approx(5.0)
    assert report["reference"]["img_per_s"] == pytest.approx(0.5) and report["tfrobust"]["clean_accuracy"] == 0.8
    printed = capsys.readouterr().out
    assert "5.00x" in printed and "reference + 0.5 points: met)" in printed
    assert "| reference AutoAttack (PyTorch port) |" in printed
    # A stub that fails is one message naming the reference's Python.
    stub.write_text("import sys\nsys.exit('no module named torch')\n")
    with pytest.raises(SystemExit, match="/some/python.*Its last line: no module named torch$"):
        cli.main(["bench", "--eval", tiny_mnist_run, "--n", "5", "--reference", "autoattack",
                  "--reference-python", "/some/python", "--reference-script", str(stub)])


@pytest.mark.parametrize("args, match", [
    (["--reference", "autoattack", "--reference-python", "p"], "name the model with --eval MODEL"),
    (["--eval", "RUN", "--reference", "torch"], "use --reference autoattack, not torch"),
    (["--eval", "RUN", "--reference", "autoattack"], "go together"),
    (["--eval", "RUN", "--memory-only"], "does not go with --eval"),
    (["--reference-model", "adapter"], "it goes with --eval MODEL --reference autoattack"),
    (["--eval", "RUN", "--reference-model", "adapter"], "it goes with --reference autoattack"),
    (["--eval", "MODEL.keras"], "records no recipe"),
])
def test_bench_eval_flags_that_do_not_fit_are_one_line(tiny_mnist_run, args, match, capsys):
    args = [tiny_mnist_run if a == "RUN" else os.path.join(tiny_mnist_run, "model.keras") if a == "MODEL.keras"
            else a for a in args]
    with pytest.raises(SystemExit, match=match):
        cli.main(["bench", *args])


def test_table_says_when_the_matmul_underestimates_the_peak():
    # The WRN-28-10 run on an AMD EPYC: both sides' convolutions outran the 2048 matmul (MFU 92-106%).
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results",
                        "2026-12-07-vm-wrn28-10-pgd10-float32.json")
    report = json.load(open(path))
    assert report["results"]["tfrobust"]["mfu"] > 1
    assert "matmul underestimates this CPU's peak" in bench.table(report)
    for key in report["results"]:
        report["results"][key]["mfu"] = 0.5
    assert "underestimates" not in bench.table(report)
