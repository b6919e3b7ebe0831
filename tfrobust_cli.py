"""The `tfrobust` command line's parser, apart from the tfrobust package so that it imports no TensorFlow.

`import tfrobust` imports TensorFlow and Keras (the package registers its Keras
classes on import, so that saved models load), which takes seconds. This module
parses the command line with the standard library alone, so `tfrobust --help`,
`tfrobust --version` and a command's `--help` answer at once. A command's code
(`tfrobust.cli`) is imported only to run it, with TensorFlow's C++ logging
quiet unless `--verbose` is given or TF_CPP_MIN_LOG_LEVEL is set.
"""

import argparse
import ast
import contextlib
import importlib.util
import os
import re
import sys
import warnings

EPILOG = "Pixel values are in [0, 1]; eps accepts fractions such as 8/255."
DEBUG_HELP = "show the full traceback of an error instead of its one-line message"
VERBOSE_HELP = "show TensorFlow's C++ log lines (hidden unless TF_CPP_MIN_LOG_LEVEL is set)"
# TF_CPP_MIN_LOG_LEVEL when the user set none: 3 hides INFO, WARNING and ERROR lines. The ERROR ones on a
# machine without a GPU (e.g. cuInit failing) are noise; a real failure still raises a Python exception.
QUIET_TF_LOG_LEVEL = "3"


def version():
    """tfrobust's `__version__`, read from tfrobust/version.py without importing the package."""
    spec = importlib.util.find_spec("tfrobust")
    if spec is None or not spec.origin:
        return "unknown"
    with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
                return ast.literal_eval(node.value)
    return "unknown"


@contextlib.contextmanager
def _stderr_to_devnull():
    """Points file descriptor 2 at /dev/null inside the block.

    TensorFlow's C++ code logs lines at import ("All log messages before
    absl::InitializeLog() ...", oneDNN, CUDA drivers) before it reads
    TF_CPP_MIN_LOG_LEVEL (TF 2.21, measured), so the variable alone cannot
    hide them. An exception raised inside the block is printed after it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _import_commands(verbose):
    """Imports `tfrobust.cli` (and so TensorFlow), quietly unless `verbose` or the user set a log level."""
    if "tensorflow" in sys.modules:  # imported already: nothing left to quiet
        from tfrobust import cli

        return cli
    quiet = not verbose and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    with _stderr_to_devnull() if quiet else contextlib.nullcontext():
        from tfrobust import cli
    return cli


def _validation():
    """tfrobust/validation.py, loaded from its file: importing it as `tfrobust.validation` would run
    tfrobust/__init__.py, and with it TensorFlow. It imports only the standard library and NumPy."""
    spec = importlib.util.find_spec("tfrobust")
    path = os.path.join(list(spec.submodule_search_locations)[0], "validation.py")
    module_spec = importlib.util.spec_from_file_location("_tfrobust_cli_validation", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# tfrobust.report.SWEEP_FACTORS, repeated here so that `--help` does not import TensorFlow (a test compares them).
REPORT_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def build_parser():
    """The `tfrobust` argument parser.

    Returns:
        An `argparse.ArgumentParser` whose parsed arguments carry `command`,
        `verbose` and `handler`, the name of the command's function in `tfrobust.cli`.
    """
    parser = argparse.ArgumentParser(
        prog="tfrobust",
        description="Adversarial training and robustness evaluation with Keras 3 / TensorFlow.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"tfrobust {version()}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # Also accepted after the command; SUPPRESS keeps a command's parser from resetting a --verbose given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    validation = _validation()

    p = sub.add_parser("train", parents=[common], help="train a recipe with model.fit", epilog=EPILOG)
    p.add_argument("recipe", help="a recipe file, or the name of a shipped recipe (`tfrobust recipes` lists them), "
                   "e.g. wong2020_mnist_linf_fgsm_rs")
    p.add_argument("--variant", default="full", help="'full' (paper settings), 'small' (CPU minutes), or another variant the recipe lists in VARIANTS")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. epochs=5 or attack.eps=8/255")
    p.add_argument("--output", required=True, help="run directory: checkpoints, TensorBoard logs, history")
    p.add_argument("--data-dir", type=validation.existing_dir_arg, help="directory with npz files or prepared TFDS data")
    p.add_argument("--fresh", action="store_true",
                   help="start again: delete OUTPUT's run (only a directory tfrobust made) once the recipe, data "
                        "and model check out, instead of resuming")
    p.set_defaults(handler="cmd_train")

    p = sub.add_parser("eval", parents=[common], help="clean and robust accuracy of a model", epilog=EPILOG)
    p.add_argument("model", help="a run directory, a .keras file, an exported SavedModel version directory or a "
                                 "zoo name (`tfrobust zoo list`)")
    p.add_argument("--attacks", help="comma-separated: fgsm, pgd, pgd_margin, pgd-targeted, multitargeted, apgd-ce, apgd-dlr, apgd-t, "
                   "fab, fab-t, square, stadv, autoattack, autoattack-plus, autoattack-rand, or none for clean accuracy only "
                   "(default: the recipe's)")
    p.add_argument("--eps", type=validation.numbers_arg(), help="comma-separated radii, e.g. 0.3,0.2 or 8/255")
    p.add_argument("--norm", choices=("linf", "l2"))
    p.add_argument("--n", type=validation.int_arg(1), help="evaluate the first N test examples")
    p.add_argument("--steps", type=validation.int_arg(1), help="PGD steps (default: the recipe's eval.steps)")
    p.add_argument("--restarts", type=validation.int_arg(1), help="PGD restarts (default: the recipe's eval.restarts)")
    p.add_argument("--step-size", type=validation.number_arg(), help="PGD step size, e.g. 0.01 or 2/255 (default: the recipe's)")
    p.add_argument("--apgd-steps", type=validation.int_arg(1),
                   help="APGD / FAB / autoattack iterations (default: the recipe's eval.apgd_steps, 100 unless it "
                        "sets fewer; standard AutoAttack is 100)")
    p.add_argument("--queries", type=validation.int_arg(1),
                   help="Square / autoattack query budget (default: the recipe's eval.queries, 5000 unless it sets "
                        "fewer; standard AutoAttack is 5000)")
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
    p.add_argument("--recipe", help="recipe file or shipped recipe name describing the model")
    p.add_argument("--variant", default="full")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--json", help="write the report as JSON to this path")
    p.set_defaults(handler="cmd_eval")

    p = sub.add_parser("export", parents=[common], help="evaluate a trained run and export a SavedModel with metadata.json", epilog=EPILOG)
    p.add_argument("run", help="a run directory or .keras file; or an exported version (NAME/VERSION) to export "
                               "again, as the next version, with the current signatures (no retraining)")
    p.add_argument("--output", default="saved_models", help="base directory (TF Serving layout); its models.config "
                                                            "is rewritten to list every model there")
    p.add_argument("--name", help="model name, default <dataset>_<method>_<norm>")
    p.add_argument("--n", type=validation.int_arg(1), help="test examples for the recorded metrics")
    p.add_argument("--state-dir", help="save finished evaluation batches here; the same command resumes")
    p.add_argument("--batch-size", type=validation.int_arg(1),
                   help="examples per evaluation batch (default: the recipe's eval.batch_size); smaller batches "
                        "lose less work to an interruption when --state-dir is set")
    p.add_argument("--no-eval", action="store_true",
                   help="export now without metrics (the evaluation can take hours); exporting that version "
                        "again (NAME/VERSION) evaluates it and adds them")
    p.add_argument("--json", help="also write the evaluation's report as JSON to this path (as eval --json)")
    p.add_argument("--recipe")
    p.add_argument("--variant", default="full")
    p.add_argument("--dataset")
    p.add_argument("--norm", choices=("linf", "l2"))
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(handler="cmd_export")

    p = sub.add_parser("landscape", parents=[common], help="filter-normalised 1D/2D loss landscape and sharpness numbers (Li et al.)",
                       epilog=EPILOG)
    p.add_argument("model", help="a run directory or .keras file")
    p.add_argument("--out", required=True, help="directory for grid.npz (resumable), landscape.png, sharpness.json")
    p.add_argument("--dims", type=int, choices=(1, 2), default=2)
    p.add_argument("--points", type=validation.int_arg(1), default=21, help="grid points per axis")
    p.add_argument("--span", type=validation.span_arg, default="-1,1", help="axis range lo,hi, e.g. -1,1")
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
    p.set_defaults(handler="cmd_landscape")

    p = sub.add_parser("geometry", parents=[common], help="accuracy, 1-SSIM and sharpness of several runs; 1-SSIM vs sharpness rank "
                                        "correlation (Prabhu et al.)")
    p.add_argument("runs", nargs="+", help="run directories with eval.json and LANDSCAPE_DIR/sharpness.json")
    p.add_argument("--landscape-dir", default="landscape", help="the `tfrobust landscape --out` directory in each run")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(handler="cmd_geometry")

    p = sub.add_parser("bench", parents=[common], help="throughput of clean/adversarial training steps, the attack and the pipeline; MFU")
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
    p.add_argument("--reference", choices=("torch", "autoattack"),
                   help="torch: also time benchmarks/torch_reference.py, alternating repetitions with tfrobust's; "
                        "autoattack (with --eval): also run the reference AutoAttack on the same points")
    p.add_argument("--eval", metavar="MODEL",
                   help="instead of the training step: images per second of `autoattack` (standard) on MODEL's "
                        "first --n test images, at its recipe's threat model; MODEL: a run directory, an exported "
                        "version or a zoo name")
    p.add_argument("--n", type=validation.int_arg(1), default=100, help="with --eval: the first N test images")
    p.add_argument("--data-dir", type=validation.existing_dir_arg, help="with --eval: the dataset's npz files")
    p.add_argument("--reference-python",
                   help="with --reference autoattack: a Python that has torch and fra31/auto-attack installed")
    p.add_argument("--reference-configs",
                   help="comma-separated subset of eager,channels_last,compile,channels_last_bf16 (default: those "
                        "computing in tfrobust's precision, else all)")
    p.add_argument("--reference-model", choices=("native", "adapter"),
                   help="with --eval: what the reference AutoAttack attacks: the model's weights ported to the same "
                        "network in PyTorch (default; ResNets and PreActResNet-18), or the TensorFlow model behind "
                        "a torch adapter (any model)")
    p.add_argument("--reference-script", help="path of torch_reference.py, or with --eval of autoattack_reference.py "
                                              "(default: the repository's)")
    p.add_argument("--reference-command", help=argparse.SUPPRESS)  # a stand-in worker, for tests
    p.add_argument("--memory-only", action="store_true",
                   help="only the memory figures: peak RSS of fresh processes before and with the training step")
    p.add_argument("--json", help="write the report here, e.g. benchmarks/results/<date>-<machine>.json")
    p.set_defaults(handler="cmd_bench")

    p = sub.add_parser("compare", parents=[common], help="mean, std, 95%% CI over seeds per group of runs; significance of differences")
    p.add_argument("groups", nargs="+", metavar="NAME=PATHS",
                   help="a group: run directories (each with eval.json) or globs, comma-separated; "
                        "the first group is the baseline")
    p.add_argument("--json", help="write the comparison here")
    p.set_defaults(handler="cmd_compare")

    p = sub.add_parser("curves", parents=[common], help="per-epoch training curves of groups of runs: best epoch, final value and "
                                      "the gap (robust overfitting, Rice et al.)")
    p.add_argument("groups", nargs="+", metavar="NAME=PATHS",
                   help="a group: run directories (each with history.csv) or globs, comma-separated")
    p.add_argument("--metric", default="val_robust_accuracy", help="a history.csv column")
    p.add_argument("--png", help="plot the mean curves (range over runs shaded) here")
    p.add_argument("--json", help="write the curves and summaries here")
    p.set_defaults(handler="cmd_curves")

    p = sub.add_parser("mixbn-stats", parents=[common], help="compare a MixBN model's clean and adversarial BatchNorm statistics")
    p.add_argument("model", help="a run directory or .keras file trained with model.batch_norm=mixbn")
    p.add_argument("--png", help="write Xie & Yuille's Figure 3-style plot here")
    p.add_argument("--json", help="write the per-layer numbers as JSON")
    p.set_defaults(handler="cmd_mixbn_stats")

    p = sub.add_parser("generated-stats", parents=[common], help="complementarity (train/test/self) and coverage (train/test) of "
                                               "generated sets (Gowal et al.)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--generated", action="append", metavar="NAME=PATH",
                   help="an external generated set (npz with 'image'); repeatable")
    p.add_argument("--sets", default="held-out real,gaussian,mixup",
                   help="reference rows to compute: held-out real, gaussian, mixup, mixup of the reference "
                        "(comma-separated; '' for none)")
    p.add_argument("--n", type=validation.int_arg(1), default=2000, help="points drawn from every set")
    p.add_argument("--k", type=validation.int_arg(1), default=5, help="k-NN coverage's neighbourhood (Naeem et al.: 5)")
    p.add_argument("--seed", type=validation.int_arg(0), default=0)
    p.add_argument("--mixup-alpha", type=validation.number_arg(), default=1.0)
    p.add_argument("--features", metavar="MODEL", help="a run directory, .keras file or exported version "
                                                       "(NAME/VERSION): measure in its penultimate layer instead of pixels")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(handler="cmd_generated_stats")

    p = sub.add_parser("serve", parents=[common], help="serve an exported SavedModel over TF Serving's REST API "
                       "(KServe's model server; the serving extra)", epilog=EPILOG)
    p.add_argument("model", help="a SavedModel version directory (saved_models/NAME/VERSION) or a model directory "
                                 "(its newest version)")
    p.add_argument("--port", type=validation.int_arg(1), default=8501, help="HTTP port (default 8501, TF Serving's)")
    p.add_argument("--name", help="the served model name (default: the model directory's name)")
    p.add_argument("--grpc-port", type=validation.int_arg(1),
                   help="also serve KServe's v2 gRPC API on this port (default: off)")
    p.set_defaults(handler="cmd_serve")

    p = sub.add_parser("report", parents=[common], help="a self-contained HTML robustness report of one model, or a "
                       "comparison of several", epilog=EPILOG)
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="a zoo name (`tfrobust zoo list`), an exported version, a run directory or a .keras file; "
                        "several models (of one dataset) are compared")
    p.add_argument("--output", required=True, help="directory for report.html, report.json and the resumable state")
    p.add_argument("--n", type=validation.int_arg(1), default=500,
                   help="test images for the sweep, the per-class numbers and the image grid (default 500)")
    p.add_argument("--attacks", default="fgsm,pgd",
                   help="comma-separated sweep attacks (default fgsm,pgd; the last gives the per-class numbers)")
    p.add_argument("--steps", type=validation.int_arg(1), default=20, help="iterations of the sweep's iterative "
                   "attacks (default 20)")
    p.add_argument("--factors", type=validation.numbers_arg(), default=",".join(str(f) for f in REPORT_FACTORS),
                   help="the sweep's radii as multiples of each model's trained eps; must include 1")
    p.add_argument("--examples", type=validation.int_arg(1), default=8, help="images in the adversarial grid")
    p.add_argument("--eval", action="append", metavar="JSON",
                   help="a model's recorded evaluation (`tfrobust eval --json`), once per MODEL in order "
                        "(default: the export's metadata.json or the run's eval.json)")
    p.add_argument("--recipe", help="recipe for a model that records none")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(handler="cmd_report")

    p = sub.add_parser("zoo", parents=[common], help="the shipped robust models by name: list, leaderboard, index",
                       epilog=EPILOG)
    p.add_argument("action", choices=("list", "leaderboard", "index"),
                   help="list: the models and where they are; leaderboard: their numbers from metadata.json as a "
                        "Markdown table; index: rebuild the zoo's index (names, checksums) from saved_models/")
    p.add_argument("--readme", metavar="FILE",
                   help="leaderboard: also rewrite the table between FILE's leaderboard markers")
    p.add_argument("--check", action="store_true",
                   help="index / leaderboard --readme: change nothing; exit 1 if the file is not up to date")
    p.set_defaults(handler="cmd_zoo")

    p = sub.add_parser("serve-client", parents=[common], help="send images to a model served by TF Serving and print predictions")
    p.add_argument("--model", required=True, help="served model name, e.g. mnist_pgd_linf")
    p.add_argument("--url", default="http://localhost:8501", help="REST base URL")
    p.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC instead (needs tensorflow-serving-api)")
    p.add_argument("--images", nargs="+", help="PNG/JPEG files (sent as b64 to serve_image_bytes)")
    p.add_argument("--npy", help="a .npy batch, float32 [0, 1] or uint8 NHWC")
    p.add_argument("--dataset", default="mnist", help="else: the first N test images of this dataset")
    p.add_argument("--n", type=validation.int_arg(1), default=8)
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.set_defaults(handler="cmd_serve_client")

    p = sub.add_parser("main", parents=[common], help="the main job: robust MNIST end to end (train, evaluate, export)")
    p.add_argument("--output", default="runs/main")
    p.add_argument("--saved-models", default="saved_models")
    p.add_argument("--recipe", help="a recipe file or shipped recipe name (default: tfrobust_mnist_linf_pgd_cnn)")
    p.add_argument("--data-dir", type=validation.existing_dir_arg)
    p.add_argument("--fresh", action="store_true", help="train from scratch instead of resuming")
    p.set_defaults(handler="cmd_main")
    p = sub.add_parser("recipes", parents=[common], help="list the shipped recipes, which train, eval and main take "
                                                           "by name")
    p.set_defaults(handler="cmd_recipes")
    return parser


# Flags whose value may start with a minus sign: argparse would read "--span -1,1"'s value as an option.
NEGATIVE_VALUE_FLAGS = ("--span",)


def _joined_negative_values(argv):
    """ARGV with "--span -1,1" written as "--span=-1,1"."""
    out, i = [], 0
    while i < len(argv):
        if (argv[i] in NEGATIVE_VALUE_FLAGS and i + 1 < len(argv)
                and re.match(r"-[0-9.]", argv[i + 1])):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv=None):
    """Runs `tfrobust ARGV` and returns its exit code.

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).

    Returns:
        0 on success, 2 for an error that a command reports in one line
        (bad input, a missing file or module).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_joined_negative_values(argv))
    args.argv = argv
    commands = _import_commands(args.verbose)
    command = getattr(commands, args.handler)
    try:
        with warnings.catch_warnings():
            for category in getattr(commands, "REPORTED_WARNINGS", ()):
                warnings.simplefilter("ignore", category)
            return command(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as e:
        if args.debug:
            raise
        print(f"tfrobust {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
