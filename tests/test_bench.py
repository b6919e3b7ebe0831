import json
import sys

import keras
import numpy as np
import pytest

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
    # A PGD-3 step does 3x the work of a clean step per image: a margin that timing noise does not cross.
    assert report["ratios"]["adv_over_clean_time"] > 1
    assert report["flops"]["adv_step_per_image"] == 9 * report["flops"]["forward_per_image"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["tensorflow"]
    assert report["spread"]["adv_ips"]["min"] <= figures["adv_ips"] <= report["spread"]["adv_ips"]["max"]
    assert "PGD-3 training step" in capsys.readouterr().out
    assert report["config"]["attack_precision"] == "float32" and report["flops"]["mfu_against"] == "float32"


def test_bench_bfloat16_attack_row_uses_the_bfloat16_peak(tmp_path):
    report = bench.run(model_name="wong_cnn", image_shape=(28, 28, 1), batch_size=4, steps=1, reps=1, warmup=0,
                       iters=1, matmul_n=64, attack_precision="bfloat16")
    assert report["config"]["attack_precision"] == "bfloat16"
    assert report["flops"]["matmul_peak_flops"] == report["flops"]["matmul_peak_flops_bfloat16"]
    assert report["results"]["tfrobust"]["adv_ips"] > 0


FAKE_WORKER = r'''
import json, sys
# A stand-in for torch_reference.py --serve: fixed seconds per step, so the
# expected ratios follow from tfrobust's own times; requests are logged.
per_step = {"eager": 0.5, "channels_last": 0.25, "compile": 0.4}
log = open(sys.argv[1], "a")
first = set()
for line in sys.stdin:
    if not line.strip():
        break
    req = json.loads(line)
    log.write(json.dumps(req) + "\n"); log.flush()
    key = req["config"]
    seconds = per_step[key] * req["iters"] * (0.1 if req["kind"] == "clean" else 1)
    print(json.dumps({"seconds": seconds, "first": key not in first, "peak_rss_mb": 123.0, "torch": "fake"}), flush=True)
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


def test_bench_reference_needs_resnet20_and_known_configs(tmp_path):
    with pytest.raises(ValueError, match="ResNet-20 only"):
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
    with pytest.raises(ValueError, match="ResNet-20 only"):
        bench.memory_report(model_name="wong_cnn", image_shape=(28, 28, 1), reference=object())
