"""How a generated set relates to the real data: complementarity and coverage.

Gowal et al., "Improving robustness using generated data", arXiv 2110.09468,
argue that generated images help adversarial training when they are
*complementary* to the training set (they add points it does not already
have) while *covering* the real distribution, and report both for their
generators, the class-conditional Gaussian and mixup among them (the poster's
table, `../shared/papers/gowal2021_generated_data.txt`). The poster gives the
numbers but not the formulas. Its three complementarity columns (train, test,
self) sum to 100% in every row, so they are shares of one population; this
module implements the reading that fits that table, and keeps two measures of
its own under other names. Every definition is stated here in full so that a
number can always be traced to its computation.

Every measure works on feature vectors `phi(x)`: the flattened [0, 1] pixels
by default, or the penultimate layer of a classifier (`penultimate_features`).
Distances are Euclidean. For a point `x` and a set `S`, `d_S(x)` is the
distance from `x` to its nearest neighbour in `S` (itself excluded when `x`
is in `S`), and `r_k(x; S)` the distance to its k-th nearest neighbour. All
sets (train and test references, generated set) have the same size `n`.

Gowal et al.'s measures, as read from their table:

- **Complementarity (train, test, self) of G**: for each generated point `g`,
  where its nearest neighbour lies among train, test and the rest of G:
  the shares of `argmin(d_train(g), d_test(g), d_G(g))`. They sum to 1. A
  generator that samples the data distribution scores about 1/3 each (the
  three sets are the same size); near-copies of training images score high
  on train (mixup); points far from all real data, close only to each other,
  score high on self (noise).
- **Coverage of R by G** (R = train or test): the share of real points whose
  nearest neighbour among the other real points and G is generated,
  `mean_{r in R} 1[d_G(r) < d_R(r)]`. A generator that samples the data
  distribution scores about 1/2.

tfrobust's own measures:

- **Distance ratio of G to R** (R = train or test):
  `median_{g in G} d_R(g) / m_R`, with `m_R = median_{r in R} d_R(r)` the
  typical gap between neighbouring real points. About 1: new points at the
  data's own density (a held-out real sample scores about 1); well below 1:
  near-copies of R; well above 1: far from all real data.
- **Self distance ratio of G**: `median_{g in G} d_G(g) / m_train`, the
  spread of G among itself relative to the training set's; well below 1
  means near-duplicates (mode collapse).
- **k-NN coverage of R by G**: the share of real points whose
  k-nearest-neighbour ball in R holds at least one generated point,
  `mean_{r in R} 1[min_g |phi(r) - phi(g)| < r_k(r; R)]`: the coverage of
  Naeem et al., "Reliable fidelity and diversity metrics for generative
  models", arXiv 2002.09797 (k = 5 there).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfrobust.data import generated


def _as_features(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.reshape(len(x), -1).astype("float64") / 255.0
    return x.reshape(len(x), -1).astype("float64")


# Neighbours re-measured exactly beyond the k asked for: the fast expansion
# below can misorder candidates whose distances differ by rounding only.
_EXACT_MARGIN = 8


def knn_distances(queries, reference, k=1, exclude_self=False, chunk=256):
    """Distances from each query to its `k` nearest reference points, ascending.

    Candidates are found with `|a - b|^2 = |a|^2 - 2ab + |b|^2` (one matrix
    product per chunk), then the nearest `k + 8` of them are measured again
    as `|a - b|` directly, so that a duplicate comes out at exactly 0 (the
    expansion leaves rounding noise of about 1e-6 on 3072 pixels, which a
    strict comparison such as coverage's would misread).

    Args:
        queries: `[N, ...]` features (uint8 images are scaled to [0, 1]).
        reference: `[M, ...]` features of the same size per point.
        k: neighbours per query.
        exclude_self: `queries` is `reference` itself; each point's distance to
            itself is left out (duplicates elsewhere still count).
        chunk: queries per distance block (bounds memory to chunk x M).

    Returns:
        float64 `[N, k]`.
    """
    q = _as_features(queries)
    r = _as_features(reference)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, the reference {r.shape[1]}")
    if exclude_self and q.shape != r.shape:
        raise ValueError(f"exclude_self needs the queries to be the reference itself. Received shapes {q.shape} "
                         f"and {r.shape}")
    available = len(r) - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must lie in [1, {available}] for a reference of {len(r)} points. Received: k={k}")
    candidates = min(k + _EXACT_MARGIN, available)
    r_sq = np.sum(r ** 2, axis=1)
    r_t = r.T
    out = np.empty((len(q), k))
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        sq = np.sum(block ** 2, axis=1)[:, None] - 2.0 * (block @ r_t) + r_sq[None, :]
        if exclude_self:
            rows = np.arange(len(block))
            sq[rows, start + rows] = np.inf
        nearest = np.argpartition(sq, candidates - 1, axis=1)[:, :candidates]
        exact = np.linalg.norm(block[:, None, :] - r[nearest], axis=-1)
        out[start:start + len(block)] = np.sort(exact, axis=1)[:, :k]
    return out


def real_scale(real):
    """`m_R`: the median distance from a real point to its nearest other real point."""
    return float(np.median(knn_distances(real, real, k=1, exclude_self=True)[:, 0]))


def distance_ratio(generated, real, scale=None):
    """`median_g d_R(g) / m_R` (module docstring); about 1 for a held-out real sample.

    Args:
        generated: the generated set's features.
        real: the real reference set's features (train or test).
        scale: `m_R`, if already known (`real_scale(real)`).
    """
    scale = real_scale(real) if scale is None else scale
    if scale <= 0:
        raise ValueError("The real set has duplicate points only (its nearest-neighbour scale is 0).")
    return float(np.median(knn_distances(generated, real, k=1)[:, 0]) / scale)


def self_distance_ratio(generated, train_scale):
    """`median_g d_G(g) / m_train`: the generated set's spread relative to the training set's."""
    if train_scale <= 0:
        raise ValueError("The training set's nearest-neighbour scale is 0 (duplicate points only).")
    return float(np.median(knn_distances(generated, generated, k=1, exclude_self=True)[:, 0]) / train_scale)


def knn_coverage(generated, real, k=5):
    """Naeem et al.'s coverage: the share of real points whose k-NN ball holds a generated point.

    Naeem, Oh, Uh, Choi & Yoo, "Reliable fidelity and diversity metrics for
    generative models", arXiv 2002.09797, Eq. 4.
    """
    radius = knn_distances(real, real, k=k, exclude_self=True)[:, -1]
    nearest_generated = knn_distances(real, generated, k=1)[:, 0]
    return float(np.mean(nearest_generated < radius))


def complementarity(generated, train, test):
    """Gowal et al.'s complementarity: where each generated point's nearest neighbour lies.

    Args:
        generated, train, test: features of the generated set and the two
            real reference sets (the same size each: module docstring).

    Returns:
        (train, test, self) shares, summing to 1.
    """
    d = np.stack([knn_distances(generated, train, k=1)[:, 0], knn_distances(generated, test, k=1)[:, 0],
                  knn_distances(generated, generated, k=1, exclude_self=True)[:, 0]], axis=1)
    nearest = np.argmin(d, axis=1)
    return tuple(float(np.mean(nearest == i)) for i in range(3))


def coverage(generated, real):
    """Gowal et al.'s coverage: the share of real points whose nearest neighbour, among the other real
    points and the generated ones, is generated (`mean_r 1[d_G(r) < d_R(r)]`)."""
    own = knn_distances(real, real, k=1, exclude_self=True)[:, 0]
    return float(np.mean(knn_distances(real, generated, k=1)[:, 0] < own))


def penultimate_features(model, batch_size=500):
    """A function mapping uint8 or [0, 1] images to a functional classifier's penultimate layer.

    The penultimate layer is the input of the model's last layer (the logits
    `Dense` in tfrobust's models). Subclassed models have no such graph and
    are refused.
    """
    try:
        extractor = keras.Model(model.inputs, model.layers[-1].input)
    except (AttributeError, ValueError) as e:
        raise ValueError(f"penultimate features need a functional or Sequential model, with a graph from its input "
                         f"to its last layer; {type(model).__name__} has none ({e}). Use pixel features instead.")
    predict = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)

    def features(images):
        images = np.asarray(images)
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            batch = batch.astype("float32") / 255.0 if batch.dtype == np.uint8 else batch.astype("float32")
            out.append(np.asarray(predict(tf.constant(batch))).reshape(len(batch), -1))
        return np.concatenate(out) if out else np.zeros((0, 0), "float32")

    return features


@dataclasses.dataclass
class Row:
    """One generated set's measures (module docstring for the definitions)."""

    name: str
    n: int
    complementarity_train: float
    complementarity_test: float
    complementarity_self: float
    coverage_train: float
    coverage_test: float
    distance_ratio_train: float
    distance_ratio_test: float
    distance_ratio_self: float
    knn_coverage_train: float
    knn_coverage_test: float


def generated_set_table(sets, train, test, n=2000, k=5, seed=0, features=None):
    """Complementarity (train/test/self) and coverage (train/test) of each generated set.

    Args:
        sets: dict name -> uint8 images `[N_i, H, W, C]` (at least `n` each).
        train: the real training images, uint8; the reference is `n` of them.
        test: the real test images, uint8; likewise.
        n: points drawn from every set, real or generated (the measures
            depend on set size, so all sets get the same).
        k: the k-NN coverage's neighbourhood (Naeem et al. use 5).
        seed: which `n` points are drawn.
        features: None for pixels, or a function images -> `[N, D]` (e.g.
            `penultimate_features(model)`).

    Returns:
        A list of `Row`, in the order of `sets`.
    """
    rng = np.random.RandomState(seed)

    def draw(images, name):
        if len(images) < n:
            raise ValueError(f"{name} has {len(images)} images; n={n} are needed")
        picked = np.asarray(images)[np.sort(rng.choice(len(images), n, replace=False))]
        return _as_features(picked if features is None else features(picked))

    train_f, test_f = draw(train, "train"), draw(test, "test")
    train_scale, test_scale = real_scale(train_f), real_scale(test_f)
    rows = []
    for name, images in sets.items():
        g = draw(images, name)
        shares = complementarity(g, train_f, test_f)
        rows.append(Row(name=name, n=n,
                        complementarity_train=shares[0], complementarity_test=shares[1],
                        complementarity_self=shares[2],
                        coverage_train=coverage(g, train_f), coverage_test=coverage(g, test_f),
                        distance_ratio_train=distance_ratio(g, train_f, train_scale),
                        distance_ratio_test=distance_ratio(g, test_f, test_scale),
                        distance_ratio_self=self_distance_ratio(g, train_scale),
                        knn_coverage_train=knn_coverage(g, train_f, k),
                        knn_coverage_test=knn_coverage(g, test_f, k)))
    return rows


_REFERENCE_SETS = ("held-out real", "gaussian", "mixup", "mixup of the reference")


def compare_generators(train_images, train_labels, test_images, external=None, n=2000, k=5, seed=0,
                       features=None, mixup_alpha=1.0, include=("held-out real", "gaussian", "mixup")):
    """The measures for the paper's reference generators and any external sets.

    The training set is split in two at random: one half is the train
    reference, the other supplies "held-out real", the calibration row (new
    real images score about 1 on complementarity, and their coverage is what a
    perfect generator of `n` images reaches). The class-conditional Gaussian
    is fitted to, and mixup draws its pairs from, the whole training set, as
    they would be for training. "mixup of the reference" draws its pairs from
    the `n` training images that are the train reference, so that a sample's
    sources are among its possible nearest neighbours (with it, the reference
    is drawn before the other sets, which changes which points they get).

    Args:
        train_images, train_labels: the real training set (uint8, int).
        test_images: the real test set (uint8).
        external: dict name -> uint8 images of generated sets to add.
        n, k, seed, features: as `generated_set_table`.
        mixup_alpha: the Beta parameter of mixup.
        include: which of "held-out real", "gaussian", "mixup", "mixup of the
            reference" to compute.

    Returns:
        A list of `Row`.
    """
    unknown = set(include) - set(_REFERENCE_SETS)
    if unknown:
        raise ValueError(f"include takes {', '.join(repr(s) for s in _REFERENCE_SETS)}. Received: {sorted(unknown)}")
    order = np.random.RandomState(seed).permutation(len(train_images))
    half = len(order) // 2
    sets = {}
    if "held-out real" in include:
        sets["held-out real"] = np.asarray(train_images)[np.sort(order[half:])]
    if "gaussian" in include:
        gaussian = generated.ClassConditionalGaussian().fit(train_images, train_labels)
        sets["gaussian"] = gaussian.sample(n, seed=seed + 1)[0]
    if "mixup" in include:
        sets["mixup"] = generated.mixup_samples(train_images, train_labels, n, alpha=mixup_alpha, seed=seed + 2)[0]
    reference = np.asarray(train_images)[np.sort(order[:half])]
    if "mixup of the reference" in include:
        picked = np.sort(np.random.RandomState(seed + 3).choice(half, n, replace=False))
        reference = reference[picked]
        labels = np.asarray(train_labels)[np.sort(order[:half])][picked]
        sets["mixup of the reference"] = generated.mixup_samples(reference, labels, n, alpha=mixup_alpha,
                                                                 seed=seed + 4)[0]
    sets.update(external or {})
    return generated_set_table(sets, reference, test_images, n=n, k=k, seed=seed, features=features)


def format_table(rows):
    """`generated_set_table` rows as two Markdown tables: Gowal et al.'s measures (in %, as the
    poster's), then tfrobust's own."""
    lines = ["| generated set | complementarity train % | test % | self % | coverage train % | test % |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {100 * r.complementarity_train:.2f} | {100 * r.complementarity_test:.2f} | "
                     f"{100 * r.complementarity_self:.2f} | {100 * r.coverage_train:.2f} | "
                     f"{100 * r.coverage_test:.2f} |")
    lines += ["", "| generated set | distance ratio train | test | self | k-NN coverage train | test |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.distance_ratio_train:.3f} | {r.distance_ratio_test:.3f} | "
                     f"{r.distance_ratio_self:.3f} | {r.knn_coverage_train:.3f} | {r.knn_coverage_test:.3f} |")
    return "\n".join(lines)


__all__ = ["Row", "compare_generators", "complementarity", "coverage", "distance_ratio", "format_table",
           "generated_set_table", "knn_coverage", "knn_distances", "penultimate_features", "real_scale",
           "self_distance_ratio"]
