#!/bin/bash
# The accelerator check: on a machine with a GPU (or several) and TensorFlow, in about ten minutes,
#   1. `tfrobust bench` of the PGD-10 training step of ResNet-20 (img/s, MFU against the device's measured
#      matmul peak, first step, memory);
#   2. a short training of the main recipe (bundled MNIST) under `tfrobust train`'s automatic strategy
#      (MirroredStrategy over every GPU when there are several), one epoch on 6,000 images;
#   3. the attack contract tests, which compare every attack compiled with XLA against its eager run
#      (tests/attacks, `-k contract`), on whatever device TensorFlow places them;
# and writes one JSON with the devices, each part's outcome and wall time, and the benchmark's figures.
# Run from a checkout with the test extra installed: benchmarks/accelerator_check.sh [OUT.json]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-accelerator_check.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

part() {  # name command...: runs a part, keeps its log, exit code and seconds
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$tmp/$name.log" 2>&1
  echo "$? $((SECONDS - start))" > "$tmp/$name.status"
  echo "$name: exit $(cut -d' ' -f1 "$tmp/$name.status") in $((SECONDS - start)) s"
}

part bench tfrobust bench --model resnet20 --batch-size 128 --steps 10 --reps 3 --warmup 1 --json "$tmp/bench.json"
part train tfrobust train tfrobust_mnist_linf_pgd_cnn --set train.epochs=1 --set data.n_train=6000 \
    --output "$tmp/run"
part xla python -m pytest -q -p no:cacheprovider tests/attacks -k contract

python - "$tmp" "$out" <<'EOF'
import json, os, sys, platform

import tensorflow as tf

tmp, out = sys.argv[1], sys.argv[2]
result = {
    "devices": [{"name": d.name, "type": d.device_type,
                 "details": tf.config.experimental.get_device_details(d)}
                for d in tf.config.list_physical_devices() if d.device_type != "CPU"],
    "tensorflow": tf.__version__, "python": platform.python_version(), "parts": {},
}
for name in ("bench", "train", "xla"):
    code, seconds = open(os.path.join(tmp, name + ".status")).read().split()
    log = open(os.path.join(tmp, name + ".log")).read().splitlines()
    result["parts"][name] = {"exit": int(code), "seconds": int(seconds), "log_tail": log[-15:]}
if os.path.exists(os.path.join(tmp, "bench.json")):
    result["bench"] = json.load(open(os.path.join(tmp, "bench.json")))
result["all_passed"] = all(p["exit"] == 0 for p in result["parts"].values())
if not result["devices"]:
    result["note"] = "no accelerator found: every figure is a CPU figure"
json.dump(result, open(out, "w"), indent=2)
print(f"Wrote {out}: all parts passed: {result['all_passed']}, accelerators: {len(result['devices'])}")
EOF
