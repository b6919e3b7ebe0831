"""A static adversarial training set: one stored adversarial example per training image.

Prabhu et al., "Understanding adversarial robustness through loss landscape
geometries" (arXiv 1907.09061), fine-tune a pretrained clean model on the
training set augmented 1:1 with adversarial examples generated once, before
fine-tuning, with FGSM, PGD or stAdv. `generate` makes that set, batch by
batch on disk so that an interrupted generation continues where it stopped;
`load` reads it back; `augmented` returns the 1:1 clean + adversarial arrays
that a standard-training run then fits on.

The stored images are uint8, as a published dataset would be. Rounding to
whole pixel values could leave a norm ball by up to half a grey level, so
for Linf the stored image is clipped to the largest whole-pixel ball inside
eps (`floor(255 eps)` grey levels); L2 examples are scaled back into the
ball in pixel units; stAdv examples (a flow bound, not a pixel ball) are
only rounded.
"""

import json
import math
import os
import zlib

import numpy as np

from tfrobust import progress
from tfrobust.attacks import base as attack_base
from tfrobust.attacks import registry as attack_registry
from tfrobust.data import pipelines
from tfrobust.stores import BatchStore, weights_fingerprint

MANIFEST = "manifest.json"


def _to_uint8(x_adv, x_clean, norm, eps):
    adv = np.round(np.clip(x_adv, 0.0, 1.0) * 255.0)
    clean = np.round(x_clean * 255.0)
    if norm == "linf":
        levels = math.floor(255.0 * eps + 1e-6)
        adv = np.clip(adv, clean - levels, clean + levels)
    elif norm == "l2":
        delta = adv - clean
        norms = np.sqrt(np.sum(delta.reshape(len(delta), -1) ** 2, axis=1))
        limit = 255.0 * eps
        scale = np.minimum(1.0, limit / np.maximum(norms, 1e-12))
        # Scaling then flooring towards the clean image keeps the ball.
        delta = np.trunc(delta * scale[:, None, None, None])
        adv = clean + delta
    return np.clip(adv, 0, 255).astype("uint8")


def _upgrade(saved):
    return dict(saved, attack=attack_registry.upgrade_config(saved["attack"]))


def _fingerprint(classifier, attack, images, labels, batch_size, seed):
    return {
        "model": weights_fingerprint(classifier),
        "attack": attack.get_config(),
        "n": int(len(labels)),
        "images_crc": zlib.crc32(np.ascontiguousarray(images).tobytes()),
        "labels_crc": zlib.crc32(np.ascontiguousarray(np.asarray(labels, dtype="int64")).tobytes()),
        "batch_size": int(batch_size),
        "seed": int(seed),
    }


def generate(classifier, images, labels, attack, directory, *, batch_size=500, seed=0, verbose="auto"):
    """Generates and stores one adversarial example per image; resumable.

    Batch i is written to `directory/batch_{i:06d}.npz` (key `image`, uint8)
    by a `stores.BatchStore`: a killed generation leaves only whole
    batches, and running the same call again skips them. A directory made by
    another model, attack, data, batch size or seed is refused.

    The attack's random start of image i comes from the per-element seed of
    `data.eval_dataset` (seed, index i), so the set is the same whatever the
    batch size or the number of interruptions.

    Args:
        classifier: the (clean, pretrained) model to attack, [0, 1] images to logits.
        images: uint8 `[N, H, W, C]` (or float32 in [0, 1]).
        labels: int `[N]`.
        attack: an attack (FGSM, PGD, StAdv, ...) built with its eps.
        directory: where the batches and `manifest.json` go.
        batch_size: images per stored batch.
        seed: seed of the attack's random starts.
        verbose: "auto" (a bar on a terminal, lines in a pipe: `tfrobust.progress`), 1, 2 or 0.

    Returns:
        The uint8 adversarial images `[N, H, W, C]`, in the order of `images`.
    """
    store = BatchStore(directory, _fingerprint(classifier, attack, images, labels, batch_size, seed),
                       "adversarial set", upgrade=_upgrade)
    n_batches = math.ceil(len(labels) / batch_size)
    done = store.done()
    with progress.Progress(n_batches, "adversarial set", "batch", done=done, verbose=verbose) as bar:
        run = attack_base.compiled(lambda x, y, s: attack(classifier, x, y, s), reduce_retracing=True)
        ds = pipelines.eval_dataset(images, labels, batch_size=batch_size, seed=seed).skip(done)
        for index, (features, y) in enumerate(ds, start=done):
            x = features["image"]
            x_adv = run(x, y, features["seed"]).numpy()
            store.write(index, image=_to_uint8(x_adv, x.numpy(), attack.norm, attack.eps))
            bar.update(index + 1)
    return load(directory)


def load(directory):
    """The stored adversarial images of `generate`, uint8 `[N, H, W, C]`.

    Raises:
        FileNotFoundError: if the set is missing or unfinished.
    """
    manifest = os.path.join(directory, MANIFEST)
    if not os.path.exists(manifest):
        raise FileNotFoundError(f"No adversarial set in {directory!r} (no {MANIFEST}).")
    with open(manifest) as f:
        fingerprint = json.load(f)
    store = BatchStore(directory, _upgrade(fingerprint), "adversarial set", upgrade=_upgrade)
    return store.concatenate("image", math.ceil(fingerprint["n"] / fingerprint["batch_size"]))


def augmented(images, labels, adversarial):
    """The 1:1 clean + adversarial training set of Prabhu et al.

    Returns:
        (images `[2N, ...]` uint8, labels `[2N]`): the clean images, then their
        adversarial versions with the same labels. Training pipelines shuffle.
    """
    if len(adversarial) != len(images):
        raise ValueError(f"One adversarial example per image is needed. Received {len(adversarial)} "
                         f"adversarial for {len(images)} images.")
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.round(np.clip(images, 0, 1) * 255).astype("uint8")
    return np.concatenate([images, adversarial]), np.concatenate([labels, labels])


__all__ = ["augmented", "generate", "load"]
