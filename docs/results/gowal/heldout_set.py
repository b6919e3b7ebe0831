"""Writes CIFAR-10 training images [start, stop) as an unlabelled "external" set for the Gowal rows.

The small Gowal protocol trains on the first 10k training images; the other 40k,
without their labels and pseudo-labelled by a clean teacher trained on the same
10k, are the best "generated" set there can be: real images from the data
distribution. Gowal et al. compare generated data with such extra real data
(80M Tiny Images, pseudo-labelled as in Carmon et al. 2019). If even this set
does not help at our scale, the protocol, not the generator, is what limits
the generated-data rows.

    python docs/results/gowal/heldout_set.py --data-dir ../shared/datasets --start 10000 \
        --out runs/cifar10_train_10000_50000_unlabelled.npz
"""

import argparse

import numpy as np

from tfrobust import data
from tfrobust.data import generated


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--start", type=int, default=10000)
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    split = data.load("cifar10", "train", data_dir=args.data_dir)
    images = split.images[args.start:args.stop]
    generated.save(args.out, images)  # no labels: the teacher labels them
    print(f"{args.out}: {len(images)} images, train indices [{args.start}, {args.start + len(images)}), "
          f"class counts (not saved) {np.bincount(split.labels[args.start:args.stop], minlength=10).tolist()}")


if __name__ == "__main__":
    main()
