"""Every recipe loads, validates, and its smallest form trains for a step."""

import ast
import glob
import importlib.util
import json
import os

import numpy as np
import pytest

from tests import helpers
from tfrobust import data as data_lib
from tfrobust import experiment
from tfrobust.config import AUGMENT_MODES, Recipe, load_recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*.py")))
RECIPES = [p for p in RECIPES if not os.path.basename(p).startswith(("_", "common"))]


# Tracing a deep model's attack and training step takes minutes on 2 cores:
# those recipes' one-step runs are in the slow suite.
DEEP_MODELS = ("resnet56", "resnet110")


def _derivation(path):
    """(base file, CHANGE) of a recipe made with `derive_recipe`, else None."""
    base = None
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        name = getattr(node.func, "id", getattr(node.func, "attr", None)) if isinstance(node, ast.Call) else None
        if name == "derive_recipe":
            args = list(node.args) + [kw.value for kw in node.keywords if kw.arg == "base_file"]
            base = ast.literal_eval(args[1] if len(node.args) > 1 else args[-1])
    if base is None:
        return None
    spec = importlib.util.spec_from_file_location("recipe_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return base, module.CHANGE


# Recipes that differ from their base only in the augmentation mode: the
# base's one-step run covers everything else, so the default suite keeps one
# recipe per mode (the cheapest: Suri's clean "standard" row) and the robust
# rows' runs go to the slow suite. test_augment_only_recipe_equals_its_base pins
# that they really differ in nothing else.
def _augment_only(path):
    derivation = _derivation(path)
    return derivation is not None and set(derivation[1]) == {"data.augment"}


def _slow_smoke(path):
    if load_recipe(path, "small").model.name in DEEP_MODELS:
        return True
    return _augment_only(path) and "_standard_" not in os.path.basename(path)


SMOKE = [pytest.param(p, marks=pytest.mark.slow) if _slow_smoke(p) else p for p in RECIPES]


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
@pytest.mark.parametrize("variant", ["full", "small"])
def test_recipe_loads_and_documents_itself(path, variant):
    recipe = load_recipe(path, variant)
    assert isinstance(recipe, Recipe)
    module_doc = open(path).read()
    assert any(cite in module_doc for cite in ("arXiv", "tfrobust main", "blog note"))
    assert "Command" in module_doc
    if variant == "small":
        assert recipe.name.endswith("_small")


@pytest.mark.parametrize("path", [p for p in RECIPES if _augment_only(p)], ids=os.path.basename)
@pytest.mark.parametrize("variant", ["full", "small"])
def test_augment_only_recipe_equals_its_base(path, variant):
    base_file, changes = _derivation(path)
    derived = load_recipe(path, variant).to_dict()
    base = load_recipe(os.path.join(REPO, "recipes", base_file), variant).to_dict()
    assert derived["data"]["augment"] == changes["data.augment"] != base["data"]["augment"]
    for recipe in (derived, base):
        recipe["data"].pop("augment")
        recipe.pop("name"), recipe.pop("description")
    assert derived == base


def test_the_default_suite_trains_every_augmentation_mode():
    modes = {load_recipe(p, "small").data.augment for p in RECIPES if not _slow_smoke(p)}
    assert modes >= set(AUGMENT_MODES)


@pytest.mark.parametrize("variant", ["full", "small", "lowdata", "lowdata500"])
def test_gowal_rows_share_one_budget_of_steps(variant):
    # An epoch over the real data is 3.3x more steps at 30:70 real:generated;
    # the rows must compare at equal steps, as Gowal et al. do.
    recipes = [load_recipe(p, variant) for p in RECIPES if os.path.basename(p).startswith("gowal2021_")]
    assert len(recipes) >= 5 and any(r.data.generated_fraction > 0 for r in recipes)
    budgets = {(r.train.epochs, r.train.epoch_length, r.train.steps_per_epoch, r.data.n_train, r.data.batch_size,
                r.train.lr_schedule, r.train.learning_rate, r.train.lr_warmup_epochs, r.train.nesterov,
                r.train.ema_decay, r.train.ema_warmup, r.train.weight_decay, r.train.decay_batch_norm,
                r.model.name, r.model.activation, r.data.repeats) for r in recipes}
    assert len(budgets) == 1
    (budget,) = budgets
    assert budget[2] is not None or budget[1] == "real_batches"  # steps, not passes over the real share
    if variant == "full":
        # Gowal et al.'s code: int(400 x 50,000 / 1,024) = 19,531 steps of 256 images x 4 copies, 488 warm-up steps.
        r = recipes[0]
        steps = r.train.epochs * (50000 // (r.data.batch_size // r.data.repeats))
        assert abs(steps - 19531) / 19531 < 0.01 and r.data.batch_size // r.data.repeats == 256
        assert round(steps * r.train.lr_warmup_epochs / r.train.epochs) == 488


def test_gowal_lowdata_protocol_runs_many_passes_over_little_data():
    small = load_recipe(os.path.join(REPO, "recipes", "gowal2021_cifar10_linf_trades_none_resnet20.py"), "small")
    lowdata = load_recipe(os.path.join(REPO, "recipes", "gowal2021_cifar10_linf_trades_none_resnet20.py"), "lowdata")
    passes = lambda r: r.train.epochs * (r.train.steps_per_epoch or r.data.n_train // r.data.batch_size) \
        * r.data.batch_size / r.data.n_train  # noqa: E731
    assert lowdata.name.endswith("_lowdata") and lowdata.train.lr_schedule == "piecewise"
    assert lowdata.data.n_train < small.data.n_train and passes(lowdata) > 3 * passes(small)


def _variants(path):
    """The variants a recipe file offers: its VARIANTS, its base's if it is derived, else full and small."""
    spec = importlib.util.spec_from_file_location("recipe_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "VARIANTS"):
        return tuple(module.VARIANTS)
    derivation = _derivation(path)
    return _variants(os.path.join(REPO, "recipes", derivation[0])) if derivation else ("full", "small")


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_variant_loads_differs_and_others_are_refused(path):
    configs = {}
    for variant in _variants(path):
        recipe = load_recipe(path, variant).to_dict()
        assert recipe["name"] == os.path.basename(path)[:-3] + ("" if variant == "full" else "_" + variant)
        recipe.pop("name"), recipe.pop("description")
        configs[variant] = json.dumps(recipe, sort_keys=True)
    # A listed variant that get_config ignores would silently run another one.
    assert len(set(configs.values())) == len(configs)
    # A misspelt variant must not fall through to the full paper setting.
    with pytest.raises(ValueError, match="has the variants"):
        load_recipe(path, "smal")


def test_gowal_derived_rows_offer_the_lowdata_variant():
    assert all("lowdata" in _variants(p) for p in RECIPES if os.path.basename(p).startswith("gowal2021_"))


@pytest.mark.parametrize("path", SMOKE, ids=os.path.basename)
def test_smallest_form_trains_one_step(path, tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "load", helpers.fake_split(64, 16))
    recipe = load_recipe(path, "small").override({
        "data.batch_size": "8", "data.n_train": "8", "train.epochs": "1", "train.val_n": "8",
        "train.val_steps": "1", "attack.steps": "1", "eval.steps": "1", "eval.restarts": "1", "eval.n": "8",
        "eval.apgd_steps": "2", "eval.queries": "4", "eval.checks": "off",
    })
    if recipe.data.generated:
        # 32 images: every class has the two a covariance needs.
        recipe = recipe.override({"data.generated_n": 16, "data.n_train": 32})
        if recipe.data.generated != "gaussian":
            # A stand-in for the external generated set the recipe names.
            info = data_lib.info(recipe.data.dataset)
            fake = str(tmp_path / "generated.npz")
            np.savez(fake, image=np.random.RandomState(0).randint(0, 256, (16, *info.image_shape)).astype("uint8"),
                     label=np.arange(16) % info.num_classes)
            recipe = recipe.override({"data.generated": fake})
    if recipe.train.init_from:
        # A stand-in for the pretrained model the recipe starts from.
        pretrained = str(tmp_path / "pretrained.keras")
        experiment.build_classifier(recipe, data_lib.info(recipe.data.dataset)).save(pretrained)
        recipe = recipe.override({"train.init_from": pretrained})
    result = experiment.train(recipe, str(tmp_path / "run"), verbose=0)
    assert np.isfinite(result.history["loss"][0])
    # Every evaluation attack of the recipe builds; one of them runs (the
    # attacks themselves are tested in tests/attacks and tests/evaluation, and
    # tracing autoattack for every recipe would cost minutes).
    assert len(experiment.eval_attacks(recipe)) >= len(recipe.eval.attacks)
    report = experiment.evaluate(result.model.classifier, recipe.override({"eval.attacks": recipe.eval.attacks[:1]}),
                                 verbose=0)
    assert report.n == 8 and report.results[0].attack == experiment.eval_attacks(recipe)[0].name


def test_gowal_full_variant_attacks_as_their_code():
    # DeepMind's adversarial_robustness experiment.py: 10 Adam steps, lr 0.1 then 0.01 from step 5, a uniform start,
    # the batch's BatchNorm statistics (test_local_stats). The small protocol keeps TRADES' own attack.
    for row in ("none", "gaussian", "external"):
        full = load_recipe(os.path.join(REPO, "recipes", f"gowal2021_cifar10_linf_trades_{row}_resnet20.py"), "full")
        a = full.attack
        assert (a.steps, a.step_rule, a.step_size, a.step_schedule, a.bn) == (10, "adam", 0.1, ((5, 0.1),), "batch_stats")
        assert (full.train.trades_init, full.train.trades_bn) == ("uniform", "adversarial")
        assert full.eval.attacks == ("pgd", "autoattack", "multitargeted")  # their AA+MT
        for variant in ("small", "lowdata", "lowdata500"):
            small = load_recipe(os.path.join(REPO, "recipes", f"gowal2021_cifar10_linf_trades_{row}_resnet20.py"),
                                variant)
            assert (small.attack.step_rule, small.attack.step_schedule, small.attack.bn, small.train.trades_init,
                    small.train.trades_bn) == ("sign", (), "inference", "gaussian", "joint")
    l2 = load_recipe(os.path.join(REPO, "recipes", "gowal2021_cifar10_l2_trades_none_resnet20.py"), "full")
    assert (l2.attack.step_rule, l2.attack.step_size, l2.attack.step_schedule) == ("sign", None, ())


def test_committed_trades_runs_read_as_the_bn_pass_they_trained_with():
    # A recipe.json that predates train.trades_bn trained with the joint pass and must load as "joint"; later
    # ones (the trades_bn ablation, new seeds) name their mode and must keep it.
    trades = {}
    for path in glob.glob(os.path.join(REPO, "docs", "results", "*", "*", "recipe.json")):
        raw = json.load(open(path)).get("train", {})
        if raw.get("method") == "trades":
            trades[path] = raw.get("trades_bn")
    old = [p for p, mode in trades.items() if mode is None]
    named = {p: mode for p, mode in trades.items() if mode is not None}
    assert len(old) >= 10 and {"separate", "adversarial"} <= set(named.values())
    for path in old:
        assert load_recipe(path).train.trades_bn == "joint", path
    for path, mode in named.items():
        assert load_recipe(path).train.trades_bn == mode, path
