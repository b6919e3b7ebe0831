"""The `tfrobust` commands: printing over `tfrobust.experiment`, evaluation and export.

The parser is `tfrobust_cli` (it imports no TensorFlow); `main` runs a command line.
"""

import dataclasses
import json
import os
import sys
import time

from tfrobust import jsonfile
from tfrobust import run as run_lib
from tfrobust.run import train_commands
from tfrobust.evaluation.masking import GradientMaskingWarning

# Warnings that the commands print in their reports: Python's copy on stderr would repeat each one.
REPORTED_WARNINGS = (GradientMaskingWarning,)
from tfrobust_cli import build_parser, main  # noqa: F401 (the command line's entry points, kept importable here)


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
    recipe = _with_eval_flags(recipe, args)
    start = time.time()
    report = experiment.evaluate(classifier, recipe, data_dir=args.data_dir, stadv=_stadv_options(args),
                                 strategy=_strategy(args.strategy), state_dir=args.state_dir)
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


#: `tfrobust eval` and `export` flags that set a recipe key: the evaluation's settings have one channel, the recipe.
EVAL_FLAGS = {"n": "eval.n", "eps": "eval.eps", "steps": "eval.steps", "restarts": "eval.restarts",
              "step_size": "eval.step_size", "apgd_steps": "eval.apgd_steps", "queries": "eval.queries",
              "batch_size": "eval.batch_size", "bn": "eval.bn"}


def _with_eval_flags(recipe, args):
    """`recipe` with the evaluation flags given on the command line applied as overrides."""
    from tfrobust.attacks import registry as attack_registry

    overrides = {key: getattr(args, flag) for flag, key in EVAL_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    if getattr(args, "restarts", None) is not None:
        overrides["eval.apgd_restarts"] = args.restarts  # --restarts restarts APGD and FAB too
    attacks = getattr(args, "attacks", None)
    if attacks:
        # "none": clean accuracy only, cheap enough for the whole test set.
        names = [a.strip() for a in attacks.split(",") if a.strip()]
        try:
            overrides["eval.attacks"] = () if [n.lower() for n in names] == ["none"] else tuple(
                attack_registry.canonical(n) for n in names)
        except ValueError as e:
            raise ValueError(f"--attacks: {e}") from None
    if getattr(args, "no_checks", False):
        overrides["eval.checks"] = "off"
    return recipe.override(overrides) if overrides else recipe


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


def _evaluate_for_export(args, classifier, recipe):
    from tfrobust import experiment

    start = time.time()
    report = experiment.evaluate(classifier, _with_eval_flags(recipe, args),
                                 data_dir=args.data_dir, state_dir=args.state_dir)
    print(report.table())
    print()
    print(report.ssim_table())
    return report, round(time.time() - start, 1)


def _write_export_report(args, report, trained_with):
    # The same JSON as `tfrobust eval --json`: the numbers an export records, with their provenance.
    if args.json:
        _write_json(args.json, dict(report.to_json(), **_provenance(args), **trained_with))


def cmd_export(args):
    from tfrobust import bench, experiment
    from tfrobust.export import saved_model as export_lib

    if os.path.isfile(os.path.join(args.run, "saved_model.pb")):
        # An exported version: rebuilt, then exported again with the current signatures. Its metrics carry
        # over; a version exported before its evaluation (--no-eval) is evaluated now.
        classifier, recipe, md, check = experiment.rebuild_classifier(args.run, data_dir=args.data_dir)
        metadata = experiment.carried_metadata(md, check)
        metadata["reexported_from"]["command"] = _command(args)
        if "metrics" not in md and not args.no_eval:
            report, seconds = _evaluate_for_export(args, classifier, recipe)
            _write_export_report(args, report, _trained_with(args.run, md))
            metadata.update(experiment.export_metadata(recipe, report))
            metadata["wall_time_s"] = dict(md.get("wall_time_s") or {}, eval=seconds)
            metadata["evaluated_with"] = dict(_provenance(args), hardware=bench.machine())
        path = export_lib.export_saved_model(classifier, args.output, args.name or md["name"], metadata=metadata,
                                             class_names=md.get("class_names"))
        print(f"Exported {args.run} again, with the current signatures, to {path}")
        return 0
    classifier, _ = experiment.load_classifier(args.run)
    recipe = _recipe_for_model(args, args.run, None)
    report, seconds = (None, None) if args.no_eval else _evaluate_for_export(args, classifier, recipe)
    if report is not None:
        _write_export_report(args, report, _trained_with(args.run, None))
    extra = dict(_trained_with(args.run, None), **_provenance(args), hardware=bench.machine(),
                 wall_time_s={k: v for k, v in (("train", run_lib.training_seconds(args.run)), ("eval", seconds))
                              if v is not None})
    path = experiment.export(classifier, recipe, report, base_dir=args.output, name=args.name, extra=extra)
    print(f"Exported to {path}" + (" (not evaluated: export this version again to evaluate it and add its "
                                   "metrics)" if report is None else ""))
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
        if os.path.isfile(os.path.join(args.features, "saved_model.pb")):
            # An export's signatures end at the logits; the Keras classifier rebuilt from it has the layers.
            classifier = experiment.rebuild_classifier(args.features, data_dir=args.data_dir)[0]
        else:
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


def cmd_recipes(args):
    from tfrobust.config import available_recipes, recipes_dir

    recipes = available_recipes()
    print("| recipe | what it trains |\n|---|---|")
    for name, summary in recipes.items():
        print(f"| {name} | {summary} |")
    print(f"{len(recipes)} recipes in {recipes_dir()}; `tfrobust train NAME --variant small --output DIR` "
          "trains one on CPU in minutes.")
    return 0


def cmd_report(args):
    from tfrobust import report

    if args.eval and len(args.eval) > len(args.models):
        raise SystemExit(f"--eval: {len(args.eval)} files for {len(args.models)} models.")
    page = report.build(args.models, args.output, n=args.n, attacks=tuple(a.strip() for a in args.attacks.split(",")
                                                                       if a.strip()),
                        steps=args.steps, factors=tuple(args.factors), k=args.examples, data_dir=args.data_dir,
                        recipe=args.recipe, eval_jsons=args.eval, command=_command(args))
    print(f"Wrote {page} and {os.path.join(args.output, report.NUMBERS)}")
    return 0


def cmd_zoo(args):
    from tfrobust import zoo

    if args.action == "list":
        print("| model | SavedModel | on this machine |\n|---|---|---|")
        for e in zoo.catalogue():
            where = "yes" if e["metadata"] else ("no: " + e["url"] if e.get("url") else "no")
            print(f"| {e['name']} | {e['saved_model']} | {where} |")
        print(f"Models from {zoo.saved_models_dir()}; `tfrobust.zoo.load(NAME)` returns one as a Keras model.")
        return 0
    if args.action == "index":
        base = zoo.saved_models_dir()
        if base is None:
            raise SystemExit("No saved_models directory here to index; set TFROBUST_MODELS.")
        index = zoo.build_index(base, previous=zoo.read_index() if os.path.exists(zoo.INDEX_FILE) else None)
        if args.check:
            if index != zoo.read_index():
                print(f"{zoo.INDEX_FILE} is not up to date with {base}: run `tfrobust zoo index`.")
                return 1
            print(f"{zoo.INDEX_FILE} is up to date.")
            return 0
        zoo.write_index(index)
        print(f"Wrote {zoo.INDEX_FILE}: {len(index['models'])} models from {base}.")
        return 0
    table = zoo.leaderboard()
    if args.readme:
        if not os.path.isfile(args.readme):
            raise SystemExit(f"--readme: no file at {args.readme}.")
        with open(args.readme) as f:
            text = f.read()
        updated = zoo.update_readme(text, table)
        if args.check:
            if updated != text:
                print(f"{args.readme}'s leaderboard is not up to date: run `tfrobust zoo leaderboard --readme "
                      f"{args.readme}`.")
                return 1
            print(f"{args.readme}'s leaderboard is up to date.")
            return 0
        if updated != text:
            with open(args.readme, "w") as f:
                f.write(updated)
    print(table)
    return 0


def cmd_serve(args):
    from tfrobust import model_server

    model_server.serve(args.model, port=args.port, name=args.name, grpc_port=args.grpc_port)
    return 0


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
    try:
        if args.grpc:
            if not isinstance(images, np.ndarray):
                raise ValueError("--grpc sends arrays: use --npy or --dataset. Received: --images")
            signature = "serve_uint8" if images.dtype == np.uint8 else "serving_default"
            out = serving.predict_grpc(args.grpc, args.model, images, signature=signature)
        else:
            out = serving.predict_rest(args.url, args.model, images)
    except serving.ServingError as e:
        print(f"tfrobust serve-client: {e}", file=sys.stderr)
        return 1
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
