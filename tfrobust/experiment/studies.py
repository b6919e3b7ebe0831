"""Studies of a trained model or of a generated set, as one call each.

- `landscape_study`: the filter-normalised loss landscape around a classifier
  (Li et al. 2018, as Prabhu et al. use it), clean or under an attack, with
  its sharpness numbers; writes grid.npz (resumable), landscape.png and
  sharpness.json.
- `generated_data_study`: complementarity and coverage of generated sets
  against a dataset's real images (Gowal et al. 2021, Section 4), in pixels
  or in a classifier's penultimate layer.

The command line's `landscape` and `generated-stats` are these functions and
a table; a Python user gets the same results as dicts.
"""

import dataclasses
import os

from tfrobust import jsonfile

LANDSCAPE_FILES = ("grid.npz", "landscape.png", "sharpness.json")


def landscape_study(classifier, recipe, out_dir, *, data_dir=None, n=500, dims=2, points=21, span=(-1.0, 1.0),
                    direction_norm="filter", other=None, attack=None, eps=None, steps=3, bn="fixed",
                    sharpness_n=250, radius=0.1, seed=0, strategy=None, title="", record=None):
    """Plots the loss landscape around `classifier` and measures its sharpness.

    Args:
      classifier: a Keras classifier with weights (not an export's signatures).
      recipe: the `Recipe` that describes it (dataset, attack radius and norm).
      out_dir: directory for grid.npz, landscape.png and sharpness.json;
        grid.npz resumes a killed study at the next grid point.
      data_dir: where the test split's files are.
      n: test examples evaluated at each grid point.
      dims: 1 or 2 random filter-normalised directions.
      points: grid points per axis.
      span: (low, high) coordinate range of each axis.
      direction_norm: "filter", "layer" or "none" (Li et al.'s normalisations).
      other: a second classifier; the 1D line from `classifier` to it replaces
        the random directions (Goodfellow et al.'s interpolation).
      attack: None (clean loss) or "fgsm" / "pgd": the adversarial loss at
        every grid point.
      eps: the attack's radius; default the recipe's.
      steps: PGD steps of the landscape attack.
      bn: "fixed" (the trained statistics) or "recompute" (re-estimated at
        every point).
      sharpness_n: examples for the Hessian eigenvalue and loss increase.
      radius: filter-normalised radius of the loss increase.
      seed: directions, attack starts and sharpness directions.
      strategy: a tf.distribute strategy for each point's data, or None.
      title: the plot's title.
      record: extra keys stored in sharpness.json (e.g. the command).

    Returns:
      A dict: "grid" (the grid from `landscape.evaluate_grid`), "sharpness"
      (the numbers written to sharpness.json), "centre_loss" (the loss at the
      model itself) and "files" (the paths written).
    """
    from tfrobust import data as data_lib
    from tfrobust import landscape
    from tfrobust.attacks import registry as attack_registry

    if not hasattr(classifier, "trainable_weights"):
        raise ValueError("a landscape needs a Keras classifier with weights to perturb (a run directory or a "
                         ".keras file), not an export")
    test = data_lib.load(recipe.data.dataset, "test", data_dir=data_dir)
    images, labels = test.images[:n], test.labels[:n]
    if other is not None:
        directions = [landscape.interpolation_direction(classifier, other)]
    else:
        directions = [landscape.random_direction(classifier, seed=seed + k, norm=direction_norm)
                      for k in range(dims)]
    axes = landscape.grid_coordinates(tuple(span), points, len(directions))
    built = None
    if attack:
        params = {"steps": steps} if attack != "fgsm" else {}
        built = attack_registry.build(attack, recipe.attack.eps if eps is None else eps, recipe.attack.norm,
                                      **params)
    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join(out_dir, f) for f in LANDSCAPE_FILES]
    grid = landscape.evaluate_grid(classifier, images, labels, directions, axes, attack=built, bn=bn, seed=seed,
                                   path=files[0], strategy=strategy)
    landscape.plot(grid, files[1], title=title)
    numbers = landscape.sharpness(classifier, images[:sharpness_n], labels[:sharpness_n], radius=radius, seed=seed)
    numbers.update({**(record or {}), "grid": grid["meta"]})
    jsonfile.write(files[2], numbers)
    centre = tuple(len(a) // 2 for a in axes)
    return {"grid": grid, "sharpness": numbers, "centre_loss": float(grid["loss"][centre]), "files": files}


def format_landscape_study(study, radius):
    """The study's numbers as a Markdown table."""
    numbers = study["sharpness"]
    return "\n".join([
        "| measure | value |", "|---|---|",
        f"| loss at the model | {study['centre_loss']:.4f} |",
        f"| top Hessian eigenvalue | {numbers['top_hessian_eigenvalue']:.4f} |",
        f"| loss increase at radius {radius:g} ({numbers['directions']} directions) | "
        f"{numbers['loss_increase']:.4f} +- {numbers['loss_increase_std']:.4f} |"])


def _feature_classifier(path, data_dir):
    from tfrobust.experiment.building import load_classifier
    from tfrobust.experiment.evaluation import rebuild_classifier

    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        # An export's signatures end at the logits; the Keras classifier rebuilt from it has the layers.
        return rebuild_classifier(path, data_dir=data_dir)[0]
    return load_classifier(path)[0]


def generated_data_study(dataset, *, data_dir=None, generated=None, features=None, n=2000, k=5, seed=0,
                         mixup_alpha=1.0, include=()):
    """Complementarity and coverage of generated sets (Gowal et al. 2021, Section 4).

    Args:
      dataset: the real dataset's name (its train and test splits are the
        references).
      data_dir: where its files are.
      generated: {name: path} of external generated sets (npz with 'image').
      features: None (measure in pixels) or a run directory, .keras file or
        exported version whose penultimate layer is the feature space.
      n: points drawn from every set.
      k: the k-NN coverage's neighbourhood (Naeem et al.: 5).
      seed: which points are drawn, and the built-in reference sets.
      mixup_alpha: the mixup reference set's Beta parameter.
      include: the built-in reference rows to compute ("held-out real",
        "gaussian", "mixup", "mixup of the reference").

    Returns:
      A dict: "dataset", "n", "k", "seed", "features" (the space, in words)
      and "rows" (`generated_data.Row`s).
    """
    from tfrobust import data as data_lib
    from tfrobust.data import generated as generated_lib
    from tfrobust.evaluation import generated_data

    info = data_lib.info(dataset)
    train = data_lib.load(dataset, "train", data_dir=data_dir)
    test = data_lib.load(dataset, "test", data_dir=data_dir)
    external = {name: generated_lib.load(path, image_shape=info.image_shape, require_labels=False)[0]
                for name, path in (generated or {}).items()}
    extractor = None
    if features:
        extractor = generated_data.penultimate_features(_feature_classifier(features, data_dir))
    rows = generated_data.compare_generators(
        train.images, train.labels, test.images, external=external, n=n, k=k, seed=seed, features=extractor,
        mixup_alpha=mixup_alpha, include=tuple(include))
    space = f"penultimate layer of {features}" if features else "pixels"
    return {"dataset": dataset, "n": n, "k": k, "seed": seed, "features": space, "rows": rows}


def generated_data_record(study):
    """The study as JSON-ready data (rows as dicts)."""
    return dict(study, rows=[dataclasses.asdict(r) for r in study["rows"]])
