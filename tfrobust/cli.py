"""`tfrobust train|eval|export|main`: parsing and printing over `tfrobust.experiment`."""

import argparse
import dataclasses
import json
import os
import sys
import time

from tfrobust import jsonfile, validation

EPILOG = "Pixel values are in [0, 1]; eps accepts fractions such as 8/255."


def _parse_set(items):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set takes key=value. Received: {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def _recipe_from_args(args):
    from tfrobust.config import load_recipe

    recipe = load_recipe(args.recipe, args.variant)
    overrides = _parse_set(args.set)
    if getattr(args, "data_dir", None) is not None:
        overrides["data.data_dir"] = args.data_dir
    return recipe.override(overrides) if overrides else recipe


def _command(args):
    """The command line that ran, as a user would type it (from main's argv, not sys.argv)."""
    return " ".join(["tfrobust"] + list(args.argv))


def _provenance(args):
    """{"command": the command line, "code": the code's version and commit (`tfrobust.version`)}."""
    from tfrobust.version import code_version

    return {"command": _command(args), "code": code_version()}


def _write_json(path, data):
    """Writes `data` to `path` as strict JSON (`tfrobust.jsonfile`) and says so."""
    jsonfile.write(path, data)
    print(f"Wrote {path}")


def cmd_train(args):
    from tfrobust import distribute, experiment

    recipe = _recipe_from_args(args)
    # Picked before anything else touches TF: MultiWorkerMirroredStrategy must come first.
    strategy = distribute.get_strategy("auto")
    output = distribute.write_dir(args.output, strategy)
    print(f"Training {recipe.name} into {output}", flush=True)
    result = experiment.train(recipe, args.output, strategy=strategy, fresh=args.fresh, command=_command(args))
    print(f"Data: {result.train_source}")
    print(f"Done in {result.seconds:.0f} s. Model: {os.path.join(result.output_dir, 'model.keras')}")
    return 0


def _recipe_for_model(args, model_path, metadata):
    """The recipe that describes MODEL: its run's recipe.json, its export metadata, or flags."""
    from tfrobust.config import Recipe, load_recipe

    if args.recipe:
        recipe = load_recipe(args.recipe, args.variant)
    elif os.path.isdir(model_path) and os.path.exists(os.path.join(model_path, "recipe.json")):
        recipe = load_recipe(os.path.join(model_path, "recipe.json"))
    elif metadata and "recipe_config" in metadata:
        recipe = Recipe.from_dict(metadata["recipe_config"])
    else:
        dataset = args.dataset or (metadata or {}).get("dataset")
        if not dataset:
            raise SystemExit("Cannot tell MODEL's dataset: pass --dataset or --recipe.")
        recipe = Recipe(name="cli")
        recipe = recipe.override({"data.dataset": dataset})
    overrides = {}
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.norm:
        overrides["attack.norm"] = args.norm
    return recipe.override(overrides) if overrides else recipe


def cmd_eval(args):
    from tfrobust import experiment

    classifier, metadata = experiment.load_classifier(args.model)
    if args.bn_branch:
        import keras

        from tfrobust.models import mixbn

        if not isinstance(classifier, keras.Model) or not mixbn.has_mixbn(classifier):
            raise SystemExit("--bn-branch needs a .keras model or run directory with MixBN layers.")
        mixbn.set_branch(classifier, args.bn_branch)
    recipe = _recipe_for_model(args, args.model, metadata)
    names = None
    if args.attacks:
        # "none": clean accuracy only, cheap enough for the whole test set.
        names = () if args.attacks.strip().lower() == "none" else tuple(a.strip() for a in args.attacks.split(","))
    start = time.time()
    report = experiment.evaluate(
        classifier,
        recipe,
        n=args.n,
        eps_values=args.eps,
        attack_names=names,
        data_dir=args.data_dir,
        steps=args.steps,
        restarts=args.restarts,
        step_size=args.step_size,
        apgd_steps=args.apgd_steps,
        queries=args.queries,
        stadv=_stadv_options(args),
        batch_size=args.batch_size,
        strategy=_strategy(args.strategy),
        state_dir=args.state_dir,
        # The masking checks question robust accuracy; there is none without attacks.
        checks="off" if args.no_checks or names == () else None,
        bn=args.bn,
    )
    print(report.table())
    if report.results:
        print()
        print(report.ssim_table())
    if report.checks != "off":
        found = f"{len(report.warnings)} warning(s) above" if report.warnings else "no warnings"
        print(f"Gradient-masking checks ({report.checks}): {found}.")
    print(f"Evaluated in {time.time() - start:.0f} s.")
    if args.json:
        # How the model was trained travels with the numbers, so that an evaluation copied away from its
        # run still says which seed and which commands; the evaluation's own settings are in `command`.
        out = dict(report.to_json(), **_provenance(args), **_trained_with(args.model, metadata))
        _write_json(args.json, out)
    return 0


def _trained_with(model_path, metadata):
    """{"trained_with": the run's recipe.json, "train_command": [...]} as far as they are known for MODEL.

    Only the run's own recipe.json (or an export's copy of it) counts: a recipe
    given by flag describes the evaluation, not the training, and would claim a
    seed the model may not have had.
    """
    if metadata is not None:  # an export
        return {k: metadata[k] for k in ("trained_with", "train_command") if metadata.get(k)}
    run = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    if not os.path.isdir(model_path) and os.path.basename(model_path) != "model.keras":
        return {}  # another .keras file: nothing says it is the run's model
    out = {}
    if os.path.exists(os.path.join(run, "recipe.json")):
        with open(os.path.join(run, "recipe.json")) as f:
            out["trained_with"] = json.load(f)
    commands = train_commands(run)
    if commands:
        out["train_command"] = commands
    return out


def _stadv_options(args):
    options = {}
    if args.stadv_eps is not None:
        options["eps"] = args.stadv_eps
    if args.stadv_tau is not None:
        options["tau"] = args.stadv_tau
    if args.stadv_steps is not None:
        options["steps"] = args.stadv_steps
    return options


def _strategy(name):
    if not name:
        return None
    from tfrobust import distribute

    return distribute.get_strategy(name)


def train_commands(run, _depth=0):
    """The commands that trained the run directory `run`, oldest first.

    A run that started from another run's model (`train.init_from`) owes its
    weights to that run too, so that run's commands come first, recursively.
    A command is a line of the run's `command.txt` (a resumed run adds one).
    """
    commands = []
    recipe_file = os.path.join(run, "recipe.json")
    if os.path.exists(recipe_file) and _depth < 16:
        with open(recipe_file) as f:
            init_from = json.load(f).get("train", {}).get("init_from")
        if init_from:
            base = init_from if os.path.isdir(init_from) else os.path.dirname(init_from)
            if base and os.path.abspath(base) != os.path.abspath(run):
                commands += train_commands(base, _depth + 1)
    trained_by = os.path.join(run, "command.txt")
    if os.path.exists(trained_by):
        with open(trained_by) as f:
            commands += [line.strip() for line in f if line.strip()]
    return commands


def cmd_export(args):
    from tfrobust import experiment

    classifier, _ = experiment.load_classifier(args.run)
    recipe = _recipe_for_model(args, args.run, None)
    report = experiment.evaluate(classifier, recipe, n=args.n, data_dir=args.data_dir, state_dir=args.state_dir)
    print(report.table())
    print()
    print(report.ssim_table())
    extra = dict(_trained_with(args.run, None), **_provenance(args))
    path = experiment.export(classifier, recipe, report, base_dir=args.output, name=args.name, extra=extra)
    print(f"Exported to {path}")
    return 0


def cmd_landscape(args):
    from tfrobust import data as data_lib
    from tfrobust import experiment, landscape
    from tfrobust.attacks import registry as attack_registry

    classifier, _ = experiment.load_classifier(args.model)
    if not hasattr(classifier, "trainable_weights"):
        raise SystemExit("landscape needs a .keras model or a run directory (weights to perturb), not an export.")
    recipe = _recipe_for_model(args, args.model, None)
    test = data_lib.load(recipe.data.dataset, "test", data_dir=args.data_dir)
    images, labels = test.images[: args.n], test.labels[: args.n]
    if args.interpolate:
        other, _ = experiment.load_classifier(args.interpolate)
        directions = [landscape.interpolation_direction(classifier, other)]
    else:
        directions = [landscape.random_direction(classifier, seed=args.seed + k, norm=args.direction_norm)
                      for k in range(args.dims)]
    lo, hi = args.span
    axes = landscape.grid_coordinates((lo, hi), args.points, len(directions))
    attack = None
    if args.attack:
        eps = recipe.attack.eps if args.eps is None else args.eps
        params = {"steps": args.steps} if args.attack != "fgsm" else {}
        attack = attack_registry.build(args.attack, eps, recipe.attack.norm, **params)
    os.makedirs(args.out, exist_ok=True)
    grid = landscape.evaluate_grid(classifier, images, labels, directions, axes, attack=attack, bn=args.bn,
                                   seed=args.seed, path=os.path.join(args.out, "grid.npz"),
                                   strategy=_strategy(args.strategy))
    title = os.path.basename(os.path.normpath(args.model)) + (f" ({args.attack})" if attack else " (clean)")
    landscape.plot(grid, os.path.join(args.out, "landscape.png"), title=title)
    numbers = landscape.sharpness(classifier, images[: args.sharpness_n], labels[: args.sharpness_n],
                                  radius=args.radius, seed=args.seed)
    numbers.update({"model": args.model, **_provenance(args),
                    "grid": grid["meta"]})
    _write_json(os.path.join(args.out, "sharpness.json"), numbers)
    centre = tuple(len(a) // 2 for a in axes)
    print("| measure | value |\n|---|---|")
    print(f"| loss at the model | {grid['loss'][centre]:.4f} |")
    print(f"| top Hessian eigenvalue | {numbers['top_hessian_eigenvalue']:.4f} |")
    print(f"| loss increase at radius {args.radius:g} ({numbers['directions']} directions) | "
          f"{numbers['loss_increase']:.4f} +- {numbers['loss_increase_std']:.4f} |")
    print(f"Wrote {args.out}/grid.npz, landscape.png, sharpness.json")
    return 0


def cmd_geometry(args):
    from tfrobust import landscape

    table = landscape.geometry_table(args.runs, landscape_dir=args.landscape_dir)
    print(landscape.format_geometry_table(table))
    if args.json:
        _write_json(args.json, dict(table, **_provenance(args)))
    return 0


def cmd_bench(args):
    from tfrobust import bench

    reference = None
    if args.reference == "torch":
        command = args.reference_command.split() if args.reference_command else None
        reference = bench.TorchReference(script=args.reference_script, command=command)
    try:
        image_shape = args.image_shape
        configs = args.reference_configs.split(",") if args.reference_configs else None
        if args.memory_only:
            report = bench.memory_report(model_name=args.model, batch_size=args.batch_size, steps=args.steps,
                                         image_shape=image_shape, num_classes=args.num_classes,
                                         reference=reference, reference_configs=configs, method=args.method,
                                         attack_precision=args.attack_precision,
                                         train_precision=args.train_precision)
            table = bench.memory_table
        else:
            report = bench.run(model_name=args.model, batch_size=args.batch_size, steps=args.steps, reps=args.reps,
                               warmup=args.warmup, iters=args.iters, image_shape=image_shape,
                               num_classes=args.num_classes, eps=args.eps,
                               matmul_n=args.matmul_n, reference=reference, reference_configs=configs,
                               attack_precision=args.attack_precision, method=args.method,
                               train_precision=args.train_precision)
            table = bench.table
    finally:
        if reference is not None:
            reference.close()
    report.update(_provenance(args))
    print(table(report))
    if args.json:
        _write_json(args.json, report)
    return 0


def _groups(specs):
    """[(name, paths)] from NAME=PATHS arguments (comma-separated run directories, files or globs)."""
    from tfrobust.evaluation import compare

    groups = []
    for spec in specs:
        if "=" not in spec:
            raise SystemExit(f"A group is NAME=PATHS (comma-separated run directories or globs). Received: {spec!r}")
        name, patterns = spec.split("=", 1)
        groups.append((name, compare.expand(patterns)))
    return groups


def cmd_compare(args):
    from tfrobust.evaluation import compare

    result = compare.compare(_groups(args.groups))
    print(compare.table(result))
    if args.json:
        _write_json(args.json, dict(result, **_provenance(args)))
    return 0


def cmd_curves(args):
    from tfrobust.evaluation import curves

    result = curves.summarise(_groups(args.groups), metric=args.metric)
    print(curves.table(result))
    if args.png:
        curves.plot(result, args.png)
        print(f"Wrote {args.png}")
    if args.json:
        _write_json(args.json, dict(result, **_provenance(args)))
    return 0


def cmd_mixbn_stats(args):
    from tfrobust import experiment
    from tfrobust.models import mixbn

    classifier, _ = experiment.load_classifier(args.model)
    if not hasattr(classifier, "layers") or not mixbn.has_mixbn(classifier):
        raise SystemExit(f"{args.model} has no MixBN layers (train with model.batch_norm=mixbn).")
    rows = mixbn.plot_branches(classifier, args.png) if args.png else mixbn.compare_branches(classifier)
    print(mixbn.format_comparison(rows))
    if args.png:
        print(f"Wrote {args.png}")
    if args.json:
        _write_json(args.json, rows)
    return 0


def cmd_generated_stats(args):
    from tfrobust import data as data_lib
    from tfrobust import experiment
    from tfrobust.data import generated
    from tfrobust.evaluation import generated_data

    info = data_lib.info(args.dataset)
    train = data_lib.load(args.dataset, "train", data_dir=args.data_dir)
    test = data_lib.load(args.dataset, "test", data_dir=args.data_dir)
    external = {}
    for item in args.generated or []:
        name, _, path = item.rpartition("=")
        external[name or os.path.basename(path)] = generated.load(path, image_shape=info.image_shape,
                                                                  require_labels=False)[0]
    features = None
    if args.features:
        classifier, _ = experiment.load_classifier(args.features)
        features = generated_data.penultimate_features(classifier)
    include = tuple(s.strip() for s in args.sets.split(",") if s.strip()) if args.sets else ()
    rows = generated_data.compare_generators(
        train.images, train.labels, test.images, external=external, n=args.n, k=args.k, seed=args.seed,
        features=features, mixup_alpha=args.mixup_alpha, include=include)
    space = f"penultimate layer of {args.features}" if args.features else "pixels"
    print(f"{args.dataset}: n={args.n} per set, k={args.k}, features: {space}, seed {args.seed}")
    print(generated_data.format_table(rows))
    if args.json:
        _write_json(args.json, {**_provenance(args), "dataset": args.dataset, "n": args.n, "k": args.k,
                                "seed": args.seed, "features": space,
                                "rows": [dataclasses.asdict(r) for r in rows]})
    return 0


def cmd_main(args):
    from tfrobust import main_job

    return main_job.run(
        output_dir=args.output, saved_models=args.saved_models, data_dir=args.data_dir,
        fresh=args.fresh, recipe_path=args.recipe,
    )


def cmd_serve_client(args):
    import numpy as np

    from tfrobust import serving

    labels = None
    if args.images:
        images = [open(p, "rb").read() for p in args.images]
    elif args.npy:
        images = np.load(args.npy, allow_pickle=False)
    else:
        from tfrobust import data as data_lib

        test = data_lib.load(args.dataset, "test", data_dir=args.data_dir)
        images, labels = test.images[: args.n], test.labels[: args.n]
    if args.grpc:
        if not isinstance(images, np.ndarray):
            raise ValueError("--grpc sends arrays: use --npy or --dataset. Received: --images")
        signature = "serve_uint8" if images.dtype == np.uint8 else "serving_default"
        out = serving.predict_grpc(args.grpc, args.model, images, signature=signature)
    else:
        out = serving.predict_rest(args.url, args.model, images)
    print("| # | class | name | probability |" + (" label |" if labels is not None else ""))
    print("|---|---|---|---|" + ("---|" if labels is not None else ""))
    for i, c in enumerate(out["classes"]):
        name = out["class_names"][i] if "class_names" in out else ""
        name = name.decode() if isinstance(name, bytes) else name
        row = f"| {i} | {int(c)} | {name} | {float(out['probabilities'][i][int(c)]):.4f} |"
        print(row + (f" {int(labels[i])} |" if labels is not None else ""))
    if labels is not None:
        print(f"accuracy: {np.mean(np.asarray(out['classes']).astype(int) == labels):.4f} on {len(labels)} images")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfrobust",
        description="Adversarial training and robustness evaluation with Keras 3 / TensorFlow.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe with model.fit", epilog=EPILOG)
    p.add_argument("recipe", help="a recipe file, e.g. recipes/madry2018_mnist_linf_pgd_cnn.py")
    p.add_argument("--variant", default="full", help="'full' (paper settings), 'small' (CPU minutes), or another variant the recipe lists in VARIANTS")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. epochs=5 or attack.eps=8/255")
    p.add_argument("--output", required=True, help="run directory: checkpoints, TensorBoard logs, history")
    p.add_argument("--data-dir", type=validation.existing_dir_arg, help="directory with npz files or prepared TFDS data")
    p.add_argument("--fresh", action="store_true",
                   help="start again: delete OUTPUT's run (only a directory tfrobust made) once the recipe, data "
                        "and model check out, instead of resuming")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="clean and robust accuracy of a model", epilog=EPILOG)
    p.add_argument("model", help="a run directory, a .keras file or an exported SavedModel version directory")
    p.add_argument("--attacks", help="comma-separated: fgsm, pgd, pgd_margin, pgd-targeted, multitargeted, apgd-ce, apgd-dlr, apgd-t, "
                   "fab, fab-t, square, stadv, autoattack, autoattack-plus, autoattack-rand, or none for clean accuracy only "
                   "(default: the recipe's)")
    p.add_argument("--eps", type=validation.numbers_arg(), help="comma-separated radii, e.g. 0.3,0.2 or 8/255")
    p.add_argument("--norm", choices=("linf", "l2"))
    p.add_argument("--n", type=validation.int_arg(1), help="evaluate the first N test examples")
    p.add_argument("--steps", type=validation.int_arg(1), help="PGD steps (default: the recipe's eval.steps)")
    p.add_argument("--restarts", type=validation.int_arg(1), help="PGD restarts (default: the recipe's eval.restarts)")
    p.add_argument("--step-size", type=validation.number_arg(), help="PGD step size, e.g. 0.01 or 2/255 (default: the recipe's)")
    p.add_argument("--apgd-steps", type=validation.int_arg(1), help="APGD / FAB / autoattack iterations (default 100)")
    p.add_argument("--queries", type=validation.int_arg(1), help="Square / autoattack query budget (default 5000)")
    p.add_argument("--stadv-eps", type=validation.number_arg(), help="stAdv flow bound (not --eps; see tfrobust.attacks.stadv)")
    p.add_argument("--stadv-tau", type=validation.number_arg(0.0, inclusive=True), help="stAdv flow-smoothness weight tau")
    p.add_argument("--stadv-steps", type=validation.int_arg(1), help="stAdv optimisation steps")
    p.add_argument("--batch-size", type=validation.int_arg(1))
    p.add_argument("--strategy", help="tf.distribute strategy: default, mirrored, multi_worker, tpu or auto")
    p.add_argument("--state-dir", help="save finished batches here; the same command resumes an interrupted run")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking checks")
    p.add_argument("--bn", choices=("inference", "batch_stats"),
                   help="BatchNorm statistics: moving averages (default) or each batch's own (Xie & Yuille)")
    p.add_argument("--bn-branch", choices=("clean", "adv"),
                   help="for MixBN models: the BatchNorm branch to evaluate (default: the model's own)")
    p.add_argument("--dataset", help="override the dataset recorded with the model")
    p.add_argument("--recipe", help="recipe file describing the model")
    p.add_argument("--variant", default="full")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--json", help="write the report as JSON to this path")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="evaluate a trained run and export a SavedModel with metadata.json", epilog=EPILOG)
    p.add_argument("run", help="a run directory or .keras file")
    p.add_argument("--output", default="saved_models", help="base directory (TF Serving layout)")
    p.add_argument("--name", help="model name, default <dataset>_<method>_<norm>")
    p.add_argument("--n", type=validation.int_arg(1), help="test examples for the recorded metrics")
    p.add_argument("--state-dir", help="save finished evaluation batches here; the same command resumes")
    p.add_argument("--recipe")
    p.add_argument("--variant", default="full")
    p.add_argument("--dataset")
    p.add_argument("--norm", choices=("linf", "l2"))
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("landscape", help="filter-normalised 1D/2D loss landscape and sharpness numbers (Li et al.)",
                       epilog=EPILOG)
    p.add_argument("model", help="a run directory or .keras file")
    p.add_argument("--out", required=True, help="directory for grid.npz (resumable), landscape.png, sharpness.json")
    p.add_argument("--dims", type=int, choices=(1, 2), default=2)
    p.add_argument("--points", type=validation.int_arg(1), default=21, help="grid points per axis")
    p.add_argument("--span", type=validation.span_arg, default="-1,1", help="axis range, e.g. -1,1")
    p.add_argument("--direction-norm", choices=("filter", "layer", "none"), default="filter")
    p.add_argument("--interpolate", metavar="MODEL_B", help="1D: the line from MODEL to MODEL_B instead")
    p.add_argument("--attack", choices=("fgsm", "pgd"), help="adversarial landscape: attack at every point")
    p.add_argument("--eps", type=validation.number_arg(), help="attack radius (default: the model's recipe)")
    p.add_argument("--steps", type=validation.int_arg(1), default=3, help="PGD steps of the landscape attack")
    p.add_argument("--bn", choices=("fixed", "recompute"), default="fixed",
                   help="BatchNorm statistics at each point: the trained ones, or re-estimated on 4 batches")
    p.add_argument("--n", type=validation.int_arg(1), default=500, help="test examples per grid point")
    p.add_argument("--sharpness-n", type=validation.int_arg(1), default=250,
                   help="examples for the Hessian / sharpness numbers")
    p.add_argument("--radius", type=validation.number_arg(), default=0.1,
                   help="filter-normalised radius of the loss increase")
    p.add_argument("--seed", type=validation.int_arg(0), default=0)
    p.add_argument("--strategy", help="tf.distribute strategy for each point's data")
    p.add_argument("--dataset")
    p.add_argument("--recipe")
    p.add_argument("--variant", default="full")
    p.add_argument("--norm", choices=("linf", "l2"))
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(func=cmd_landscape)

    p = sub.add_parser("geometry", help="accuracy, 1-SSIM and sharpness of several runs; 1-SSIM vs sharpness rank "
                                        "correlation (Prabhu et al.)")
    p.add_argument("runs", nargs="+", help="run directories with eval.json and LANDSCAPE_DIR/sharpness.json")
    p.add_argument("--landscape-dir", default="landscape", help="the `tfrobust landscape --out` directory in each run")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(func=cmd_geometry)

    p = sub.add_parser("bench", help="throughput of clean/adversarial training steps, the attack and the pipeline; MFU")
    p.add_argument("--model", default="resnet20",
                   help="with --reference torch: resnet20, preact_resnet18 or wrn-28-10")
    p.add_argument("--method", choices=("pgd", "fgsm_rs"), default="pgd",
                   help="the adversarial training step: PGD-k, or FGSM-RS (one step of 1.25 eps from a random start)")
    p.add_argument("--batch-size", type=validation.int_arg(1), default=128)
    p.add_argument("--steps", type=validation.int_arg(1), default=10, help="k of PGD-k (FGSM-RS takes one step)")
    p.add_argument("--eps", type=validation.number_arg(), default="8/255")
    p.add_argument("--reps", type=validation.int_arg(1), default=5, help="timed repetitions (median and spread)")
    p.add_argument("--warmup", type=validation.int_arg(0), default=2)
    p.add_argument("--iters", type=validation.int_arg(1), default=3, help="steps per repetition")
    p.add_argument("--image-shape", type=validation.shape_arg, default="32,32,3")
    p.add_argument("--num-classes", type=validation.int_arg(2), default=10)
    p.add_argument("--matmul-n", type=validation.int_arg(1), default=2048, help="size of the peak-FLOP/s matmul")
    p.add_argument("--attack-precision", choices=("float32", "bfloat16"), default="float32",
                   help="precision of the attack's passes")
    p.add_argument("--train-precision", choices=("float32", "mixed_bfloat16"), default="float32",
                   help="Keras dtype policy of the classifier (mixed_bfloat16: every pass computes in bfloat16, "
                        "the attack's too)")
    p.add_argument("--reference", choices=("torch",),
                   help="also time benchmarks/torch_reference.py, alternating repetitions with tfrobust's")
    p.add_argument("--reference-configs",
                   help="comma-separated subset of eager,channels_last,compile,channels_last_bf16 (default: those "
                        "computing in tfrobust's precision, else all)")
    p.add_argument("--reference-script", help="path of torch_reference.py (default: the repository's)")
    p.add_argument("--reference-command", help=argparse.SUPPRESS)  # a stand-in worker, for tests
    p.add_argument("--memory-only", action="store_true",
                   help="only the memory figures: peak RSS of fresh processes before and with the training step")
    p.add_argument("--json", help="write the report here, e.g. benchmarks/results/<date>-<machine>.json")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compare", help="mean, std, 95%% CI over seeds per group of runs; significance of differences")
    p.add_argument("groups", nargs="+", metavar="NAME=PATHS",
                   help="a group: run directories (each with eval.json) or globs, comma-separated; "
                        "the first group is the baseline")
    p.add_argument("--json", help="write the comparison here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("curves", help="per-epoch training curves of groups of runs: best epoch, final value and "
                                      "the gap (robust overfitting, Rice et al.)")
    p.add_argument("groups", nargs="+", metavar="NAME=PATHS",
                   help="a group: run directories (each with history.csv) or globs, comma-separated")
    p.add_argument("--metric", default="val_robust_accuracy", help="a history.csv column")
    p.add_argument("--png", help="plot the mean curves (range over runs shaded) here")
    p.add_argument("--json", help="write the curves and summaries here")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("mixbn-stats", help="compare a MixBN model's clean and adversarial BatchNorm statistics")
    p.add_argument("model", help="a run directory or .keras file trained with model.batch_norm=mixbn")
    p.add_argument("--png", help="write Xie & Yuille's Figure 3-style plot here")
    p.add_argument("--json", help="write the per-layer numbers as JSON")
    p.set_defaults(func=cmd_mixbn_stats)

    p = sub.add_parser("generated-stats", help="complementarity (train/test/self) and coverage (train/test) of "
                                               "generated sets (Gowal et al.)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--generated", action="append", metavar="NAME=PATH",
                   help="an external generated set (npz with 'image'); repeatable")
    p.add_argument("--sets", default="held-out real,gaussian,mixup",
                   help="reference rows to compute: held-out real, gaussian, mixup (comma-separated; '' for none)")
    p.add_argument("--n", type=validation.int_arg(1), default=2000, help="points drawn from every set")
    p.add_argument("--k", type=validation.int_arg(1), default=5, help="coverage neighbourhood (Naeem et al.: 5)")
    p.add_argument("--seed", type=validation.int_arg(0), default=0)
    p.add_argument("--mixup-alpha", type=validation.number_arg(), default=1.0)
    p.add_argument("--features", metavar="MODEL", help="a run directory or .keras file: measure in its penultimate "
                                                       "layer instead of pixels")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(func=cmd_generated_stats)

    p = sub.add_parser("serve-client", help="send images to a model served by TF Serving and print predictions")
    p.add_argument("--model", required=True, help="served model name, e.g. mnist_pgd_linf")
    p.add_argument("--url", default="http://localhost:8501", help="REST base URL")
    p.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC instead (needs tensorflow-serving-api)")
    p.add_argument("--images", nargs="+", help="PNG/JPEG files (sent as b64 to serve_image_bytes)")
    p.add_argument("--npy", help="a .npy batch, float32 [0, 1] or uint8 NHWC")
    p.add_argument("--dataset", default="mnist", help="else: the first N test images of this dataset")
    p.add_argument("--n", type=validation.int_arg(1), default=8)
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(func=cmd_serve_client)

    p = sub.add_parser("main", help="the main job: robust MNIST end to end (train, evaluate, export)")
    p.add_argument("--output", default="runs/main")
    p.add_argument("--saved-models", default="saved_models")
    p.add_argument("--recipe", help="default: recipes/tfrobust_mnist_linf_pgd_cnn.py")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--fresh", action="store_true", help="train from scratch instead of resuming")
    p.set_defaults(func=cmd_main)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"tfrobust {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
