"""Generated training data (Gowal et al.): loading, a Gaussian generator, pseudo-labels.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468:
adversarial training improves when each batch mixes real images with images
from a generative model, pseudo-labelled by a non-robust classifier. Even a
class-conditional Gaussian fitted to the training set (their "low-quality"
generator, Section 4) helps a little.

The npz format is the one of the paper's published DDPM samples: `image`
(uint8 NHWC) and `label` (int). A file without `label` can be labelled with
`pseudo_label` and saved again with `save`.
"""

import math
import zlib

import numpy as np
import tensorflow as tf

from tfrobust import progress
from tfrobust.data import pipelines
from tfrobust.stores import BatchStore, weights_fingerprint


def load(path, image_shape=None, num_classes=None, require_labels=True):
    """Loads a generated set from npz (keys `image`, uint8 NHWC, and `label`).

    Args:
        path: the npz file.
        image_shape: expected (H, W, C), e.g. the real dataset's; None skips the check.
        num_classes: labels must lie in [0, num_classes); None skips the check.
        require_labels: raise if the file has no `label` array.

    Returns:
        (images uint8 `[N, H, W, C]`, labels int64 `[N]` or None).

    Raises:
        FileNotFoundError, ValueError: for a missing file or arrays that do not fit.
    """
    with np.load(path, allow_pickle=False) as z:
        if "image" not in z.files:
            raise ValueError(f"{path} has no 'image' array (found {z.files}); generated sets use the keys "
                             "'image' (uint8 NHWC) and 'label', as Gowal et al.'s published samples.")
        images = z["image"]
        labels = z["label"] if "label" in z.files else None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: 'image' must be uint8 [N, H, W, C]. Received {images.dtype} {images.shape}")
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{path}: images are {images.shape[1:]}, the real data {tuple(image_shape)}")
    if labels is None:
        if require_labels:
            raise ValueError(f"{path} has no 'label' array: pseudo-label it first (tfrobust.data.generated."
                             "pseudo_label), or name a teacher in the recipe (data.teacher=MODEL) to label it "
                             "at training time.")
        return images, None
    labels = np.asarray(labels).astype("int64").reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(labels)} labels for {len(images)} images")
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes})")
    return images, labels


def save(path, images, labels=None):
    """Saves a generated set in the npz format `load` reads."""
    arrays = {"image": np.asarray(images, dtype="uint8")}
    if labels is not None:
        arrays["label"] = np.asarray(labels, dtype="int64")
    np.savez_compressed(path, **arrays)


class ClassConditionalGaussian:
    """A Gaussian per class, fitted to the training images (Gowal et al.'s low-quality generator).

    Each class gets the mean and full covariance of its flattened training
    images in [0, 1]; samples are drawn from it, clipped to [0, 1] and rounded
    to uint8. Covariances are estimated in float64 with a small ridge
    (`ridge * I`) so that the Cholesky factor exists for D > N_class.

    Args:
        ridge: added to every covariance's diagonal.
    """

    def __init__(self, ridge=1e-4):
        self.ridge = float(ridge)
        self.means = self.factors = self.image_shape = None

    def fit(self, images, labels, num_classes=None):
        """Fits one Gaussian per class; returns self."""
        images = np.asarray(images)
        labels = np.asarray(labels).reshape(-1)
        num_classes = int(num_classes or labels.max() + 1)
        self.image_shape = images.shape[1:]
        flat = images.reshape(len(images), -1).astype("float64")
        if images.dtype == np.uint8:
            flat /= 255.0
        dim = flat.shape[1]
        self.means = np.zeros((num_classes, dim))
        self.factors = np.zeros((num_classes, dim, dim), dtype="float32")
        for k in range(num_classes):
            members = flat[labels == k]
            if len(members) < 2:
                raise ValueError(f"Class {k} has {len(members)} training images; a covariance needs 2 or more.")
            self.means[k] = members.mean(0)
            cov = np.cov(members, rowvar=False) + self.ridge * np.eye(dim)
            self.factors[k] = np.linalg.cholesky(cov).astype("float32")
        return self

    def sample(self, n, seed=0, labels=None):
        """Draws `n` images, classes in turn (or the given `labels`).

        Returns:
            (images uint8 `[n, H, W, C]`, labels int64 `[n]`).
        """
        if self.means is None:
            raise ValueError("Call fit() before sample().")
        num_classes = len(self.means)
        labels = np.arange(n) % num_classes if labels is None else np.asarray(labels).reshape(-1)
        rng = np.random.RandomState(seed)
        out = np.empty((len(labels), self.means.shape[1]), dtype="float32")
        for k in range(num_classes):
            idx = np.flatnonzero(labels == k)
            if idx.size:
                z = rng.standard_normal((idx.size, self.means.shape[1])).astype("float32")
                out[idx] = self.means[k] + z @ self.factors[k].T
        images = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype("uint8")
        return images.reshape(len(labels), *self.image_shape), labels.astype("int64")


def mixup_samples(images, labels, n, alpha=1.0, seed=0):
    """`n` mixup images, `lam * x_i + (1 - lam) * x_j` with `lam ~ Beta(alpha, alpha)`.

    Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond empirical risk
    minimization", arXiv 1710.09412. Gowal et al. compare generated sets
    against mixup as a "generator" that only recombines training images. The
    pairs (i, j) are drawn uniformly (i != j); the label is the one of the
    larger share, as a hard-label set needs one class per image.

    Returns:
        (images uint8 `[n, H, W, C]`, labels int64 `[n]`).
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.dtype != np.uint8:
        raise ValueError(f"mixup_samples takes uint8 images (as the generated-set format). Received {images.dtype}")
    if len(images) < 2:
        raise ValueError(f"mixup needs 2 or more images. Received {len(images)}")
    rng = np.random.RandomState(seed)
    i = rng.randint(0, len(images), n)
    j = (i + rng.randint(1, len(images), n)) % len(images)
    lam = rng.beta(alpha, alpha, n).astype("float32")
    shape = (n,) + (1,) * (images.ndim - 1)
    mixed = lam.reshape(shape) * images[i].astype("float32") + (1.0 - lam.reshape(shape)) * images[j].astype("float32")
    return np.round(mixed).astype("uint8"), np.where(lam >= 0.5, labels[i], labels[j]).astype("int64")


def pseudo_label(teacher, images, directory=None, batch_size=500, verbose="auto"):
    """Labels images with a (non-robust) teacher's argmax, in batches; resumable.

    Args:
        teacher: a classifier, [0, 1] images to logits.
        images: uint8 `[N, H, W, C]`.
        directory: optional; finished batches are stored there (a
            `BatchStore` tied to the teacher's weights and the images), so an
            interrupted labelling continues where it stopped.
        batch_size: images per batch.
        verbose: "auto" (a bar on a terminal, lines in a pipe: `tfrobust.progress`), 1, 2 or 0.

    Returns:
        (labels int64 `[N]`, confidence float32 `[N]`: the teacher's max probability).
    """
    n_batches = math.ceil(len(images) / batch_size)
    store = None
    done = 0
    if directory is not None:
        fingerprint = {"teacher": weights_fingerprint(teacher), "n": int(len(images)),
                       "images_crc": zlib.crc32(np.ascontiguousarray(images).tobytes()),
                       "batch_size": int(batch_size)}
        store = BatchStore(directory, fingerprint, "pseudo-labelling")
        done = store.done()
    predict = tf.function(lambda x: tf.nn.softmax(tf.cast(teacher(x, training=False), tf.float32)),
                          reduce_retracing=True)
    labels, confidence = [], []
    for i in range(done):
        batch = store.read(i)
        labels.append(batch["label"])
        confidence.append(batch["confidence"])
    with progress.Progress(n_batches, "pseudo-labelling", "batch", done=done, verbose=verbose) as bar:
        ds = pipelines.eval_dataset(images, np.zeros(len(images), "int64"), batch_size=batch_size).skip(done)
        for index, (features, _) in enumerate(ds, start=done):
            probs = predict(features["image"]).numpy()
            batch = {"label": probs.argmax(-1).astype("int64"), "confidence": probs.max(-1).astype("float32")}
            if store is not None:
                store.write(index, **batch)
            labels.append(batch["label"])
            confidence.append(batch["confidence"])
            bar.update(index + 1)
    if not labels:
        return np.zeros(0, "int64"), np.zeros(0, "float32")
    return np.concatenate(labels), np.concatenate(confidence)


__all__ = ["ClassConditionalGaussian", "load", "mixup_samples", "pseudo_label", "save"]
