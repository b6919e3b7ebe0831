import json

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
    args = ["bench", "--model", "wong_cnn", "--image-shape", "28,28,1", "--batch-size", "8", "--steps", "1",
            "--reps", "2", "--warmup", "0", "--iters", "1", "--matmul-n", "128", "--json", out]
    assert cli.main(args) == 0
    report = json.load(open(out))
    figures = report["results"]["tfrobust"]
    for key in ("adv_ips", "clean_ips", "attack_ips", "pipeline_ips", "first_step_s", "peak_rss_mb", "mfu"):
        assert figures[key] > 0, key
    # A PGD-1 step does more work per image than a clean step.
    assert report["ratios"]["adv_over_clean_time"] > 1
    assert report["flops"]["adv_step_per_image"] == 5 * report["flops"]["forward_per_image"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["tensorflow"]
    assert report["spread"]["adv_ips"]["min"] <= figures["adv_ips"] <= report["spread"]["adv_ips"]["max"]
    assert "PGD-1 training step" in capsys.readouterr().out
