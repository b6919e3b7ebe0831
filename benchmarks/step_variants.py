"""Variants of the PGD-k training step, timed side by side (the variant table of benchmarks/README.md).

Each variant is built in this one process; their repetitions are interleaved,
so the machine's drift hits them alike. Variants:

- `nofold`: the attack runs the model as it is (`TFROBUST_FOLD_BN=0`);
- `fold`: the default, BatchNorm folded into the convolutions for the attack;
- `bf16`: `fold` with the attack's passes in bfloat16 (`precision="bfloat16"`);
- `fusedbn`: every BatchNorm computed by `tf.nn.fused_batch_norm`, no folding;
- `nobn`: no BatchNorm at all (an upper bound for any BatchNorm work; not a model to train).

Usage:
    python benchmarks/step_variants.py --variants nofold,fold,bf16 --reps 5
"""

import argparse
import os
import statistics
import time

import numpy as np
import tensorflow as tf
import keras

from tfrobust import models
from tfrobust.attacks import PGD
from tfrobust.training import AdversarialModel


class FusedBatchNorm(keras.layers.BatchNormalization):
    """BatchNorm through TF's fused (oneDNN) kernel, same variables and statistics as Keras'."""

    def call(self, inputs, training=None, mask=None):
        x = tf.cast(inputs, tf.float32)
        if training and self.trainable:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, epsilon=self.epsilon,
                                                            is_training=True, data_format="NHWC")
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            var = var * (n - 1.0) / n  # the fused kernel returns the Bessel-corrected variance
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + var * (1 - self.momentum))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, mean=self.moving_mean,
                                                   variance=self.moving_variance, epsilon=self.epsilon,
                                                   is_training=False, data_format="NHWC")
        return y


def build(variant, depth):
    if variant == "fusedbn":
        return models.cifar_resnet(depth, batch_norm=lambda name: FusedBatchNorm(momentum=0.9, epsilon=1e-5,
                                                                                 name=name))
    if variant == "nobn":
        return models.cifar_resnet(depth, batch_norm=lambda name: keras.layers.Identity(name=name))
    return models.cifar_resnet(depth)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="nofold,fold,bf16,fusedbn,nobn")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--iters", type=int, default=2)
    args = p.parse_args()
    rng = np.random.RandomState(0)
    x = tf.constant(rng.rand(args.batch, 32, 32, 3).astype("float32"))
    y = tf.constant(rng.randint(0, 10, args.batch).astype("int64"))
    seeds = tf.constant(rng.randint(0, 2**31 - 1, (args.batch, 2)).astype("int32"))
    batch = ({"image": x, "seed": seeds}, y)
    steppers = {}
    for variant in args.variants.split(","):
        # Folding is decided when the attack is traced, i.e. at the first step below.
        os.environ["TFROBUST_FOLD_BN"] = "0" if variant in ("nofold", "fusedbn") else "1"
        keras.utils.set_random_seed(0)
        attack = PGD(8 / 255, steps=args.steps, select="last",
                     precision="bfloat16" if variant == "bf16" else "float32")
        model = AdversarialModel(build(variant, args.depth), attack=attack, method="pgd")
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        start = time.perf_counter()
        model.train_on_batch(*batch)
        print(f"{variant}: first step {time.perf_counter() - start:.1f} s", flush=True)
        model.train_on_batch(*batch)
        steppers[variant] = model
    rates = {v: [] for v in steppers}
    for _ in range(args.reps):
        for variant, model in steppers.items():
            start = time.perf_counter()
            for _ in range(args.iters):
                model.train_on_batch(*batch)
            rates[variant].append(args.batch * args.iters / (time.perf_counter() - start))
    print("| variant | img/s (median) | repetitions |\n|---|---|---|")
    for variant, r in rates.items():
        print(f"| {variant} | {statistics.median(r):.1f} | {', '.join(f'{v:.1f}' for v in r)} |")


if __name__ == "__main__":
    main()
