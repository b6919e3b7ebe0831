"""The main job: adversarially train MNIST (Linf eps=0.3), evaluate, export."""

import os
import sys
import time

from tfrobust import jsonfile
from tfrobust import run as run_lib

# A shipped recipe's name (`tfrobust.config.find_recipe`): found in a checkout and in an installed wheel.
MAIN_RECIPE = "tfrobust_mnist_linf_pgd_cnn"
EXPORT_NAME = "mnist_pgd_linf"


def run(output_dir="runs/main", saved_models="saved_models", data_dir=None, fresh=False, recipe_path=None):
    """Trains, evaluates on the first `eval.n` MNIST test images, prints the table, exports.

    Args:
        output_dir: the run directory (resumed unless `fresh`).
        saved_models: base directory of the export.
        data_dir: directory with npz files or prepared TFDS data (default: the bundled MNIST).
        fresh: delete `output_dir` first instead of resuming.
        recipe_path: a recipe file or shipped recipe name (default: `MAIN_RECIPE`).

    Returns:
        0 on success (the process exit code).
    """
    from tfrobust import experiment
    from tfrobust.config import load_recipe
    from tfrobust.version import code_version

    start = time.time()
    recipe = load_recipe(recipe_path or MAIN_RECIPE)
    if data_dir:
        recipe = recipe.override({"data.data_dir": data_dir})
    print(f"[1/3] Training {recipe.name}: {recipe.train.method} at {recipe.attack.norm} "
          f"eps={recipe.attack.eps}, {recipe.train.epochs} epochs -> {output_dir}", flush=True)
    trained = experiment.train(recipe, output_dir, fresh=fresh, command="tfrobust main" + (" --fresh" if fresh else ""))
    print(f"Training data: {trained.train_source}")
    # The run's own epochs, not this call's time: a finished run that is run again trains nothing.
    train_s = run_lib.training_seconds(output_dir) or 0.0
    trained_at = time.time()

    print(f"[2/3] Evaluating on the first {recipe.eval.n} test images: "
          f"{', '.join(recipe.eval.attacks)} (PGD-{recipe.eval.steps} x {recipe.eval.restarts} "
          "restarts; autoattack = APGD-CE, APGD-T, FAB-T, Square as a cascade), per-example worst case, "
          "gradient-masking checks", flush=True)
    classifier = trained.model.classifier
    report = experiment.evaluate(classifier, recipe)
    full = experiment.evaluate(classifier, recipe.override({"eval.n": 10**9, "eval.attacks": ("fgsm",),
                                                            "eval.checks": "off"}), verbose=0)
    eval_s = time.time() - trained_at
    print(report.table())
    print(report.ssim_table())
    print(f"Clean accuracy on all {full.n} test images: {100 * full.clean_accuracy:.2f}%")
    jsonfile.write(os.path.join(output_dir, "eval.json"), report.to_json())

    print("[3/3] Exporting", flush=True)
    extra = {
        "command": "tfrobust main",
        "code": code_version(),
        "clean_accuracy_full_test": full.clean_accuracy,
        "wall_time_s": {"train": round(train_s, 1), "eval": round(eval_s, 1)},
    }
    path = experiment.export(classifier, recipe, report, base_dir=saved_models, name=EXPORT_NAME, extra=extra)
    print(f"SavedModel: {path}")
    print(f"Done in {time.time() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(run())
