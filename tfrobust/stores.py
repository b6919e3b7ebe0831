"""Per-batch results on disk, so that long batch jobs resume where they stopped, and the fingerprints
that tie them to the model that made them."""

import json
import os
import zlib

import keras
import numpy as np

from tfrobust.faults import kill_point


def _difference(saved, now, width=60):
    """What differs between two fingerprints, in a few words: the keys, with short values side by side."""
    if not (isinstance(saved, dict) and isinstance(now, dict)):
        return "its description differs"

    def short(value):
        text = repr(value)
        return text if len(text) <= width else f"{type(value).__name__} of {len(value)}"

    keys = [k for k in sorted(set(saved) | set(now), key=str) if saved.get(k) != now.get(k)]
    return "; ".join(f"{k}: {short(saved.get(k))} saved, {short(now.get(k))} now" for k in keys)


class BatchStore:
    """Batches of arrays saved as `batch_{i:06d}.npz`, tied to a fingerprint of the job.

    Each batch is written to a temporary file and renamed into place, so a
    killed job leaves only whole batches. The fingerprint (a JSON-able dict:
    model hash, attack, data, batch size, seed, ...) is saved beside them; a
    store opened with a different fingerprint is refused, so that two jobs'
    batches are never mixed.

    Args:
        directory: where the batches go (created if needed).
        fingerprint: JSON-able description of the job.
        what: the job's name in error messages, e.g. "evaluation".
        manifest: file name of the saved fingerprint.
        upgrade: optional `saved fingerprint -> fingerprint`, applied before
            comparing, so that a store written by an older version of the code
            (say, an attack config without a parameter added since, at its
            default) still matches the same job.
    """

    def __init__(self, directory, fingerprint, what="batch job", manifest="manifest.json", upgrade=None):
        self.directory, self.fingerprint, self.what = directory, fingerprint, what
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, manifest)
        if os.path.exists(path):
            try:
                with open(path) as f:
                    saved = json.load(f)
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f"{path} is not valid JSON ({e}): the {what} state there is damaged. Use another "
                                 "directory or delete it.") from None
            if upgrade is not None:
                saved = json.loads(json.dumps(upgrade(saved)))
            if saved != json.loads(json.dumps(fingerprint)):
                raise ValueError(f"The {what} state in {directory!r} belongs to another {what} "
                                 f"({_difference(saved, json.loads(json.dumps(fingerprint)))}). Use another "
                                 "directory or delete it.")
        else:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(fingerprint, f, indent=1)
            os.replace(tmp, path)

    def path(self, index):
        return os.path.join(self.directory, f"batch_{index:06d}.npz")

    def done(self):
        """How many batches, from the first, are finished."""
        count = 0
        while os.path.exists(self.path(count)):
            count += 1
        return count

    def read(self, index):
        with np.load(self.path(index)) as z:
            return {k: z[k] for k in z.files}

    def write(self, index, **arrays):
        tmp = self.path(index) + ".tmp.npz"
        np.savez(tmp, **arrays)
        kill_point("batch_store.before_rename")
        os.replace(tmp, self.path(index))
        kill_point("batch_store.renamed")

    def concatenate(self, key, n_batches):
        """`key` of batches 0..n_batches-1, concatenated.

        Raises:
            FileNotFoundError: if a batch is missing (the job is unfinished).
        """
        parts = []
        for index in range(n_batches):
            if not os.path.exists(self.path(index)):
                raise FileNotFoundError(f"The {self.what} in {self.directory!r} is unfinished: "
                                        f"{self.path(index)} is missing. Run it again to complete it.")
            parts.append(self.read(index)[key])
        return np.concatenate(parts)


__all__ = ["BatchStore"]


def weights_fingerprint(classifier):
    """A short hash of `classifier`'s weights (its path for exports), for resumable state."""
    # Ties a resumable job's saved batches to the weights that made them:
    # continuing with another model would mix two models' outcomes.
    weights = getattr(classifier, "weights", None)
    if not weights:
        return repr(getattr(classifier, "path", type(classifier).__name__))
    crc = 0
    for w in weights:
        crc = zlib.crc32(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes(), crc)
    return f"{len(weights)}:{crc:08x}"
