"""The `tfrobust` commands: printing over `tfrobust.experiment`, evaluation and export.

The parser is `tfrobust_cli` (it imports no TensorFlow); `main` runs a command line.
"""

import argparse
import contextlib
import os
import sys
import time

import tfrobust
from tfrobust import jsonfile
from tfrobust import run as run_lib
from tfrobust.evaluation.masking import GradientMaskingWarning

# Warnings that the commands print in their reports: Python's copy on stderr would repeat each one.
REPORTED_WARNINGS = (GradientMaskingWarning,)
from tfrobust_cli import build_parser, main  # noqa: F401 (the command line's entry points, kept importable here)

tfrobust._import_package()  # under `python -m tfrobust` the package's __init__ left it to the command


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


def _recipe_for_model(args, model_path, metadata, overrides=None):
    """The recipe that describes MODEL: its run's recipe.json, its export metadata, or flags.

    OVERRIDES (recipe keys) are applied with --dataset and --norm in one step, so that the recipe is validated
    as the command will use it.
    """
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
    overrides = dict(overrides or {})
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.norm and args.norm != recipe.attack.norm:
        # The recipe's radii belong to its own norm: evaluating them under another is a silent mistake.
        eps = getattr(args, "eps", None)
        if eps is None:
            how = "--eps" if hasattr(args, "eps") else "--recipe with that threat model instead of --norm"
            raise ValueError(f"--norm {args.norm}: the model's recipe is {recipe.attack.norm} at eps="
                             f"{recipe.attack.eps:g}, which is not a {args.norm} radius; give one with {how}.")
        overrides["attack.norm"] = args.norm
        # The attack section then describes the threat model evaluated, as --norm makes it.
        overrides["attack.eps"] = eps[0] if isinstance(eps, (tuple, list)) else eps
    return recipe.override(overrides) if overrides else recipe


def cmd_eval(args):
    from tfrobust import experiment, zoo

    model = zoo.resolve(args.model)[0]
    classifier, metadata = experiment.load_classifier(model)
    if args.bn_branch:
        import keras

        from tfrobust.models import mixbn

        if not isinstance(classifier, keras.Model) or not mixbn.has_mixbn(classifier):
            raise SystemExit("--bn-branch needs a .keras model or run directory with MixBN layers.")
        mixbn.set_branch(classifier, args.bn_branch)
    with _flags_named(args):
        recipe = _recipe_for_model(args, model, metadata, _eval_overrides(args))
    start = time.time()
    report = experiment.evaluate(classifier, recipe, data_dir=args.data_dir, stadv=_stadv_options(args),
                                 strategy=_strategy(args.strategy), state_dir=args.state_dir)
    _print_report(report)
    print(f"Evaluated in {time.time() - start:.0f} s.")
    if args.json:
        # How the model was trained travels with the numbers, so that an evaluation copied away from its
        # run still says which seed and which commands; the evaluation's own settings are in `command`.
        out = dict(report.to_json(), **_provenance(args), **run_lib.trained_with(model, metadata))
        _write_json(args.json, out)
    return 0


def _print_report(report):
    """An evaluation's tables and whether the gradient-masking checks warned (`eval`, `export`)."""
    print(report.table())
    if report.results:
        print()
        print(report.ssim_table())
    if report.checks != "off":
        found = f"{len(report.warnings)} warning(s) above" if report.warnings else "no warnings"
        print(f"Gradient-masking checks ({report.checks}): {found}.")


#: `tfrobust eval` and `export` flags that set a recipe key: the evaluation's settings have one channel, the recipe.
EVAL_FLAGS = {"n": "eval.n", "eps": "eval.eps", "steps": "eval.steps", "restarts": "eval.restarts",
              "step_size": "eval.step_size", "apgd_steps": "eval.apgd_steps", "queries": "eval.queries",
              "batch_size": "eval.batch_size", "bn": "eval.bn"}


def _eval_attack(name):
    """The registered name of an --attacks entry that evaluation may use."""
    from tfrobust.attacks import registry as attack_registry

    try:
        spec = attack_registry.spec(name)
    except ValueError:
        spec = None
    if spec is None or not spec.evaluate:
        raise ValueError(f"--attacks: {name!r} is not an evaluation attack; expected 'none' or names from "
                         f"{', '.join(attack_registry.names(evaluate=True))}")
    return spec.name


def _eval_overrides(args):
    """The evaluation flags given on the command line, as recipe overrides."""
    overrides = {key: getattr(args, flag) for flag, key in EVAL_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    if getattr(args, "restarts", None) is not None:
        overrides["eval.apgd_restarts"] = args.restarts  # --restarts restarts APGD and FAB too
    attacks = getattr(args, "attacks", None)
    if attacks:
        # "none": clean accuracy only, cheap enough for the whole test set.
        names = [a.strip() for a in attacks.split(",") if a.strip()]
        if [n.lower() for n in names] == ["none"]:
            overrides["eval.attacks"] = ()
        else:
            overrides["eval.attacks"] = tuple(_eval_attack(n) for n in names)
    if getattr(args, "no_checks", False):
        overrides["eval.checks"] = "off"
    return overrides


@contextlib.contextmanager
def _flags_named(args):
    """Names the command-line flag in a recipe error about the key that flag set."""
    try:
        yield
    except ValueError as e:
        for flag, key in (*EVAL_FLAGS.items(), ("norm", "attack.norm")):
            if getattr(args, flag, None) is not None and str(e).startswith(f"{key} must"):
                raise ValueError(f"--{flag.replace('_', '-')}: {e}") from e
        raise


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


def cmd_export(args):
    from tfrobust import experiment

    if not os.path.exists(args.run):
        raise FileNotFoundError(f"No run directory, .keras file or export at {args.run!r}.")
    version = os.path.isfile(os.path.join(args.run, "saved_model.pb"))
    with _flags_named(args):
        result = experiment.export_model(
            args.run, base_dir=args.output, name=args.name, recipe=None if version else _recipe_for_model(
                args, args.run, None, _eval_overrides(args)), overrides=_eval_overrides(args), with_metrics=not args.no_eval,
            data_dir=args.data_dir, state_dir=args.state_dir, record=_provenance(args))
    if result.report is not None:
        _print_report(result.report)
        if args.json:
            # The same JSON as `tfrobust eval --json`: the numbers an export records, with their provenance.
            _write_json(args.json, dict(result.report.to_json(), **_provenance(args), **result.trained_with))
    if version:
        print(f"Exported {args.run} again, with the current signatures, to {result.path}")
    else:
        print(f"Exported to {result.path}" + (" (not evaluated: export this version again to evaluate it and add "
                                              "its metrics)" if result.report is None else ""))
    return 0


def cmd_landscape(args):
    from tfrobust import experiment
    from tfrobust.experiment import studies

    classifier, _ = experiment.load_classifier(args.model)
    if not hasattr(classifier, "trainable_weights"):
        raise SystemExit("landscape needs a .keras model or a run directory (weights to perturb), not an export.")
    other = experiment.load_classifier(args.interpolate)[0] if args.interpolate else None
    title = os.path.basename(os.path.normpath(args.model)) + (f" ({args.attack})" if args.attack else " (clean)")
    study = studies.landscape_study(
        classifier, _recipe_for_model(args, args.model, None), args.out, data_dir=args.data_dir, n=args.n,
        dims=args.dims, points=args.points, span=args.span, direction_norm=args.direction_norm, other=other,
        attack=args.attack, eps=args.eps, steps=args.steps, bn=args.bn, sharpness_n=args.sharpness_n,
        radius=args.radius, seed=args.seed, strategy=_strategy(args.strategy), title=title,
        record={"model": args.model, **_provenance(args)})
    print(studies.format_landscape_study(study, args.radius))
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

    if args.eval or args.reference == "autoattack":
        return _bench_eval(args)
    if args.reference_model:
        raise SystemExit("--reference-model says what the reference AutoAttack attacks: it goes with --eval MODEL "
                         "--reference autoattack.")
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


def _bench_eval(args):
    from tfrobust import bench, zoo
    from tfrobust.export import saved_model as export_lib

    if not args.eval:
        raise SystemExit("--reference autoattack times an evaluation: name the model with --eval MODEL.")
    if args.reference == "torch":
        raise SystemExit("--eval compares with the reference AutoAttack: use --reference autoattack, not torch.")
    if (args.reference == "autoattack") != bool(args.reference_python):
        raise SystemExit("--reference autoattack and --reference-python go together: the reference runs under a "
                         "Python that has torch and fra31/auto-attack.")
    if args.memory_only:
        raise SystemExit("--memory-only measures the training step; it does not go with --eval.")
    if args.reference_model and args.reference != "autoattack":
        raise SystemExit("--reference-model says what the reference AutoAttack attacks: it goes with --reference "
                         "autoattack.")
    model = zoo.resolve(args.eval)[0]
    # Only the recipe is needed here; eval_throughput loads the model itself.
    metadata = export_lib.load_metadata(model) if os.path.isfile(os.path.join(model, "saved_model.pb")) else None
    try:
        recipe = _recipe_for_model(argparse.Namespace(recipe=None, dataset=None, norm=None), model, metadata)
    except SystemExit:
        raise SystemExit(f"--eval {args.eval}: records no recipe, so its threat model is unknown; give a run "
                         "directory or an exported version.") from None
    if recipe.attack.norm not in ("linf", "l2"):
        raise SystemExit(f"--eval: AutoAttack's standard version is Linf or L2; {args.eval}'s recipe attacks at "
                         f"{recipe.attack.norm}.")
    try:
        report = bench.eval_throughput(model, recipe.data.dataset, recipe.attack.eps, recipe.attack.norm,
                                       n=args.n, data_dir=args.data_dir, reference_python=args.reference_python,
                                       harness=args.reference_script, reference_model=args.reference_model or "native")
    except RuntimeError as e:  # the harness or the reference's Python failed: said in one line
        raise SystemExit(str(e)) from None
    report.update(_provenance(args))
    print(bench.eval_table(report))
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
    from tfrobust.evaluation import generated_data
    from tfrobust.experiment import studies

    external = {}
    for item in args.generated or []:
        name, _, path = item.rpartition("=")
        external[name or os.path.basename(path)] = path
    study = studies.generated_data_study(
        args.dataset, data_dir=args.data_dir, generated=external, features=args.features, n=args.n, k=args.k,
        seed=args.seed, mixup_alpha=args.mixup_alpha,
        include=[s.strip() for s in (args.sets or "").split(",") if s.strip()])
    print(f"{args.dataset}: n={args.n} per set, k={args.k}, features: {study['features']}, seed {args.seed}")
    print(generated_data.format_table(study["rows"]))
    if args.json:
        _write_json(args.json, {**_provenance(args), **studies.generated_data_record(study)})
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
