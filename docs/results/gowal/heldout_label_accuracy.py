"""How often the teacher's pseudo-labels of the held-out images are right: their true labels are known.

The held-out control (`reproduce.sh heldout`) trains on CIFAR-10 training images [start, stop) without
their labels, labelled by a clean teacher; this reads the labels the run stored
(`<run>/generated/pseudo_labels/`) and compares them with the real ones.

    python docs/results/gowal/heldout_label_accuracy.py --data-dir ../shared/datasets \
        --run runs/gowal_steps_heldout_s0 --start 10000 --json docs/results/gowal/steps_heldout_s0/pseudo_labels.json
"""

import argparse
import glob
import json
import os

import numpy as np

from tfrobust import data, jsonfile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--start", type=int, default=10000)
    parser.add_argument("--stop", type=int, default=None, help="end of the held-out range (default: the last image)")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.run, "generated", "pseudo_labels", "batch_*.npz")))
    if not files:
        raise SystemExit(f"no stored pseudo-labels under {args.run}/generated/pseudo_labels/")
    batches = [np.load(f) for f in files]
    labels = np.concatenate([b["label"] for b in batches])
    confidence = np.concatenate([b["confidence"] for b in batches])
    truth = data.load("cifar10", "train", data_dir=args.data_dir).labels[args.start:args.stop]
    if len(truth) != len(labels):
        # A labelling that stopped early stores a prefix: scoring it would describe other images.
        raise SystemExit(f"{len(labels)} stored pseudo-labels, but the held-out range [{args.start}, "
                         f"{args.stop or 'end'}) has {len(truth)} images")
    right = labels == truth
    per_class = [float(right[truth == k].mean()) if (truth == k).any() else None for k in range(10)]
    result = {"run": args.run, "n": int(len(labels)), "train_indices": [args.start, args.start + len(labels)],
              "accuracy": float(right.mean()), "per_class_accuracy": per_class,
              "mean_confidence": float(confidence.mean()),
              "accuracy_confidence_above_0.9": float(right[confidence > 0.9].mean()) if (confidence > 0.9).any() else None,
              "share_confidence_above_0.9": float((confidence > 0.9).mean())}
    jsonfile.write(args.json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
