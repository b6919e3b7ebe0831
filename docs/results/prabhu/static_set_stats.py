"""How far a stored static adversarial set is from its clean images (uint8): a measurement, not package code.

Usage (from the repository root):
    python docs/results/prabhu/static_set_stats.py RUN_DIR CLEAN_NPZ OUT_JSON
RUN_DIR holds `adversarial_set/batch_*.npz` (key `image`) made by `train.method=static` from the first
images of CLEAN_NPZ (key `x`), in order.
"""

import glob
import json
import os
import sys

import numpy as np


def main(run, clean_npz, out):
    batches = sorted(glob.glob(os.path.join(run, "adversarial_set", "batch_*.npz")))
    adversarial = np.concatenate([np.load(b)["image"] for b in batches])
    clean = np.load(clean_npz)["x"][: len(adversarial)]
    diff = np.abs(adversarial.astype(np.int16) - clean.astype(np.int16))
    changed = diff.reshape(len(diff), -1).max(axis=1) > 0
    stats = {
        "images": int(len(adversarial)),
        "identical_images": float(np.mean(~changed)),
        "changed_pixel_values": float(np.mean(diff > 0)),
        "mean_abs_change_of_changed_values_in_255ths": float(diff[diff > 0].mean()) if (diff > 0).any() else 0.0,
        "max_abs_change_in_255ths": int(diff.max()),
        "command": " ".join(["python"] + sys.argv),
    }
    with open(out, "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
