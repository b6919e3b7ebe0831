"""Evaluating a recipe's classifier on the test split, and exporting it with the figures as metadata."""

import collections
import os
import time

import tensorflow as tf

from tfrobust import data as data_lib
from tfrobust.config import Recipe
from tfrobust.evaluation import robustness
from tfrobust.evaluation.batch_stats import BatchStatsClassifier
from tfrobust.experiment.building import build_classifier, eval_attacks, load_classifier


def evaluate(classifier, recipe, *, data_dir=None, stadv=None, verbose="auto", strategy=None, state_dir=None):
    """Evaluates a classifier as `recipe.eval` says: its attacks on the first `eval.n` test examples.

    Every setting of the evaluation is a recipe key (override them with
    `recipe.override({"eval.n": 500, "eval.attacks": ("pgd",)})`); the
    arguments here say where the data is and how to run.

    Args:
        classifier: a `keras.Model` (or callable with `output_shape`) from
            float32 [0, 1] images to logits.
        recipe: a `Recipe`; `eval.attacks` empty measures clean accuracy only
            (and runs no masking checks: there is no robust figure to question).
        data_dir: where the dataset's files are (default: the recipe's `data.data_dir`).
        stadv: stAdv's options (`eps`, `tau`, `steps`), if it is among the attacks.
        verbose: "auto", 0 or 1.
        strategy: a `tf.distribute.Strategy` to spread the batches over.
        state_dir: where finished batches are kept, so that the same call resumes.

    Returns:
        A `robustness.Report`.
    """
    d, ev = recipe.data, recipe.eval
    attacks = eval_attacks(recipe, stadv)
    test = data_lib.load(d.dataset, "test", data_dir=d.data_dir if data_dir is None else data_dir)
    if not len(test.labels):
        raise ValueError(f"The {d.dataset} test split from {test.source} is empty: there is nothing to evaluate.")
    n = min(ev.n, len(test.labels))
    source = f"{test.source}; first {n} test examples"
    if ev.bn == "batch_stats":
        classifier = BatchStatsClassifier(classifier)
        source += f"; BatchNorm with batch statistics, batches of {ev.batch_size}"
    return robustness.evaluate(
        classifier,
        test.images[:n],
        test.labels[:n],
        attacks,
        batch_size=ev.batch_size,
        seed=d.seed,
        verbose=verbose,
        source=source,
        strategy=strategy,
        state_dir=state_dir,
        checks=ev.checks if attacks else "off",
    )


def export_metadata(recipe, report, extra=None):
    """The metadata.json contents for an export: every figure comes from `report`.

    With `report=None` (an export before its evaluation) there is no `metrics` key.
    """
    if report is None:
        md = {"recipe": recipe.name, "dataset": recipe.data.dataset,
              "threat_model": {"norm": recipe.attack.norm, "eps": float(recipe.attack.eps)},
              "recipe_config": recipe.to_dict()}
        md.update(extra or {})
        return md
    robust = {}
    attacks = {}
    for r in report.results:
        key = r.attack if len(recipe.eval_eps) == 1 else f"{r.attack}@{r.eps:g}"
        robust[key] = r.accuracy
        attacks[key] = r.params
    md = {
        "recipe": recipe.name,
        "dataset": recipe.data.dataset,
        "threat_model": {"norm": recipe.attack.norm, "eps": float(recipe.attack.eps)},
        "metrics": {
            "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": robust,
            "attacks": attacks,
            "n": report.n,
            "data": report.source,
            "warnings": list(report.warnings),
            "checks": report.checks,
        },
        "recipe_config": recipe.to_dict(),
    }
    md.update(extra or {})
    return md


def export(classifier, recipe, report, base_dir="saved_models", name=None, extra=None):
    """Exports a SavedModel to `base_dir/<name>/<next version>/` with metadata.json."""
    from tfrobust.export import saved_model as export_lib

    info = data_lib.info(recipe.data.dataset)
    name = name or f"{recipe.data.dataset}_{recipe.train.method}_{recipe.attack.norm}"
    return export_lib.export_saved_model(
        classifier,
        base_dir,
        name,
        metadata=export_metadata(recipe, report, extra),
        class_names=list(info.class_names) if info.class_names else None,
    )


# metadata.json keys that export_saved_model writes itself.
_EXPORT_OWN_KEYS = ("name", "version", "input", "signatures", "created", "class_names", "bn_branch", "tfrobust_version")


def rebuild_classifier(version_dir, n=None, data_dir=None, batch_size=500, images=None):
    """The Keras classifier inside an exported version, rebuilt so that it can be exported again.

    The classifier is built from the recipe in the version's metadata.json,
    given the SavedModel's own variables, and must reproduce the SavedModel's
    logits within 1e-4 on the check images: `images` if given, else the
    first `n` test images (all by default).

    Args:
        version_dir: an exported version directory, `NAME/VERSION`.
        n: test images for the logit check (default: the whole test split).
        data_dir: directory with the dataset's npz files or prepared TFDS data.
        batch_size: batch size of the check.
        images: optional uint8 or float32 [0, 1] images `[N, H, W, C]` for the
            check instead of the test split (no data needed).

    Returns:
        (classifier, recipe, metadata dict, check dict `{"n", "max_abs_difference"}`).

    Raises:
        ValueError: no recipe in the metadata, or the rebuilt classifier's
            variables or logits differ from the SavedModel's.
    """
    from tfrobust.export import saved_model as export_lib

    md = export_lib.load_metadata(version_dir)
    if "recipe_config" not in md:
        raise ValueError(f"{version_dir}/metadata.json has no recipe_config: the classifier cannot be rebuilt.")
    recipe = Recipe.from_dict(md["recipe_config"])
    classifier = build_classifier(recipe, data_lib.info(recipe.data.dataset))
    loaded = tf.saved_model.load(version_dir)
    saved = {v.name.split(":")[0]: v for v in loaded.variables}
    wanted = {v.path: v for v in classifier.variables}
    if set(saved) != set(wanted):
        raise ValueError(f"{version_dir}: the SavedModel's variables do not match the recipe's classifier "
                         f"(only saved: {sorted(set(saved) - set(wanted))[:5]}, only rebuilt: "
                         f"{sorted(set(wanted) - set(saved))[:5]}).")
    for path, variable in wanted.items():
        if tuple(variable.shape) != tuple(saved[path].shape):
            raise ValueError(f"{version_dir}: variable {path} has shape {tuple(saved[path].shape)} in the SavedModel "
                             f"and {tuple(variable.shape)} in the recipe's classifier.")
        variable.assign(saved[path])
    if images is None:
        test = data_lib.load(recipe.data.dataset, "test", data_dir=data_dir)
        images = test.images[:n] if n else test.images
    old = loaded.signatures["serving_default"]
    worst = 0.0
    for i in range(0, len(images), batch_size):
        x = tf.constant(images[i:i + batch_size])
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 255.0
        diff = tf.reduce_max(tf.abs(old(images=x)["logits"] - tf.cast(classifier(x, training=False), tf.float32)))
        worst = max(worst, float(diff))
    if worst > 1e-4:
        raise ValueError(f"{version_dir}: the rebuilt classifier's logits differ from the SavedModel's by {worst:.3g} "
                         "(more than 1e-4).")
    return classifier, recipe, md, {"n": len(images), "max_abs_difference": worst}


def carried_metadata(md, check):
    """An exported version's metadata for its next export: all but the keys the export writes,
    plus `reexported_from` (the source version and `rebuild_classifier`'s check)."""
    metadata = {k: v for k, v in md.items() if k not in _EXPORT_OWN_KEYS}
    metadata["reexported_from"] = {"name": md.get("name"), "version": md.get("version"),
                                   "created": md.get("created"), "tfrobust_version": md.get("tfrobust_version"),
                                   "logit_check": check}
    return metadata


#: What `export_model` did: the version's path, the evaluation's report (None if not evaluated) and its wall time,
#: and what is known of how the model was trained (`run.trained_with`).
ExportResult = collections.namedtuple("ExportResult", "path report eval_seconds trained_with")


def export_model(model, *, base_dir="saved_models", name=None, recipe=None, overrides=None, with_metrics=True,
                 data_dir=None, state_dir=None, record=None):
    """Evaluates a model on its recipe's attacks and exports it as the next SavedModel version.

    Args:
      model: a run directory, a .keras file, or an exported version
        (`NAME/VERSION`), which is rebuilt (`rebuild_classifier`) and exported
        again with the current signatures, its metrics carried over.
      base_dir: the directory of exported models.
      name: the export's name; default the exported version's name, or the
        recipe's dataset, method and norm.
      recipe: the `Recipe` of a run directory or .keras file (an exported
        version carries its own).
      overrides: recipe overrides for the evaluation only (`eval.*` keys); the
        metadata records the recipe as trained.
      with_metrics: False exports without evaluating (no metrics); an exported version that
        already has metrics is never evaluated again.
      data_dir: where the test split's files are.
      state_dir: where the evaluation saves finished batches, to resume.
      record: provenance stored with the export ("command", "code").

    Returns:
      An `ExportResult`.
    """
    from tfrobust import bench
    from tfrobust import run as run_lib
    from tfrobust.export import saved_model as export_lib

    record = dict(record or {})

    def evaluated(classifier, recipe):
        start = time.time()
        report = evaluate(classifier, recipe.override(overrides or {}), data_dir=data_dir, state_dir=state_dir)
        return report, round(time.time() - start, 1)

    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        classifier, recipe, md, check = rebuild_classifier(model, data_dir=data_dir)
        metadata = carried_metadata(md, check)
        metadata["reexported_from"]["command"] = record.get("command")
        trained = run_lib.trained_with(model, md)
        report = seconds = None
        if "metrics" not in md and with_metrics:
            report, seconds = evaluated(classifier, recipe)
            metadata.update(export_metadata(recipe, report))
            metadata["wall_time_s"] = dict(md.get("wall_time_s") or {}, eval=seconds)
            metadata["evaluated_with"] = dict(record, hardware=bench.machine())
        path = export_lib.export_saved_model(classifier, base_dir, name or md["name"], metadata=metadata,
                                             class_names=md.get("class_names"))
        return ExportResult(path, report, seconds, trained)
    if recipe is None:
        raise ValueError("export_model: a run directory or .keras file needs its recipe")
    classifier, _ = load_classifier(model)
    report, seconds = evaluated(classifier, recipe) if with_metrics else (None, None)
    trained = run_lib.trained_with(model)
    extra = dict(trained, **record, hardware=bench.machine(),
                 wall_time_s={k: v for k, v in (("train", run_lib.training_seconds(model)), ("eval", seconds))
                              if v is not None})
    path = export(classifier, recipe, report, base_dir=base_dir, name=name, extra=extra)
    return ExportResult(path, report, seconds, trained)
