import dataclasses
import json
import os

import pytest

from tfrobust import config
from tfrobust.config import AttackConfig, DataConfig, Recipe, TrainConfig, load_recipe, parse_number

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREACT = "wong2020_cifar10_linf_fgsm_rs_preactresnet18"


def test_override_parses_fractions_bools_and_tuples():
    r = Recipe(name="t").override(
        {"attack.eps": "8/255", "epochs": "5", "data.flip": "false", "eval.attacks": "pgd,fgsm",
         "eval.eps": "0.1,2/255", "attack.step_size": "none"}
    )
    assert r.attack.eps == pytest.approx(8 / 255)
    assert r.train.epochs == 5 and isinstance(r.train.epochs, int)
    assert r.data.flip is False
    assert r.eval.attacks == ("pgd", "fgsm")
    assert r.eval.eps == pytest.approx((0.1, 2 / 255))


@pytest.mark.parametrize(
    "assignments, match",
    [
        ({"epoch": "5"}, "Unknown recipe key.*key='epoch'"),
        ({"train.nope": "1"}, "Unknown recipe key"),
        ({"eps": "0.1"}, "ambiguous"),
        ({"attack.eps": "0"}, r"attack.eps must be > 0. Received: attack.eps=0"),
        ({"train.method": "madry"}, "train.method"),
        ({"data.augment": "random"}, "data.augment"),
        ({"attack.steps": "0"}, "attack.steps"),
        ({"eval.attacks": "pgd,apgd"}, "eval.attacks"),
        # Refused before a run writes anything: the default model (wong_cnn) has no batch_norm factory.
        ({"model.sync_bn": "true"}, "model.sync_bn must be left at its default for 'wong_cnn'"),
        ({"model.batch_norm": "mixbn"}, "model.batch_norm must be left at its default for 'wong_cnn'"),
        ({"model.sync_bn": "yes"}, "model.sync_bn must be true or false"),
    ],
)
def test_bad_overrides_raise(assignments, match):
    with pytest.raises(ValueError, match=match):
        Recipe(name="t").override(assignments)


def test_construction_validates():
    with pytest.raises(ValueError, match="data.batch_size"):
        Recipe(name="t", data=DataConfig(batch_size=0))
    with pytest.raises(ValueError, match="train.clean_ratio"):
        Recipe(name="t", train=TrainConfig(clean_ratio=1.0))
    with pytest.raises(ValueError, match="attack.norm"):
        Recipe(name="t", attack=AttackConfig(norm="l1"))


def test_json_roundtrip(tmp_path):
    r = Recipe(name="t").override({"eval.eps": "0.1,0.2"})
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(r.to_dict()))
    assert load_recipe(str(path)) == r


def test_from_dict_rejects_unknown_keys():
    d = Recipe(name="t").to_dict()
    d["train"]["lr"] = 0.1
    with pytest.raises(ValueError, match="train keys"):
        Recipe.from_dict(d)


def test_parse_number():
    assert parse_number("8/255") == pytest.approx(8 / 255)
    assert parse_number("3") == 3 and parse_number("0.5") == 0.5


def test_recipe_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Recipe(name="t").train.epochs = 3


def test_ema_warmup_needs_an_average_to_warm_up():
    TrainConfig(ema_decay=0.99, ema_warmup=True).validate()
    with pytest.raises(ValueError, match="train.ema_warmup"):
        TrainConfig(ema_warmup=True).validate()
    with pytest.raises(ValueError, match="train.ema_warmup"):
        TrainConfig(ema_decay=0.99, ema_warmup="yes").validate()


def test_pgd_step_rule_and_schedule_from_the_command_line_and_json(tmp_path):
    r = Recipe(name="t").override({"attack.step_rule": "adam", "attack.step_schedule": "5:0.1,20:1/10",
                                   "attack.steps": "40", "train.method": "trades", "train.trades_init": "uniform"})
    assert r.attack.step_rule == "adam" and r.attack.step_schedule == ((5, 0.1), (20, 0.1))
    assert r.train.trades_init == "uniform"
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(r.to_dict()))
    assert load_recipe(str(path)) == r
    # Recipes written before these fields existed load with the old behaviour.
    d = Recipe(name="t").to_dict()
    for key in ("step_rule", "step_schedule"):
        del d["attack"][key]
    del d["train"]["trades_init"]
    old = Recipe.from_dict(d)
    assert (old.attack.step_rule, old.attack.step_schedule, old.train.trades_init) == ("sign", (), "gaussian")


def test_trades_bn_defaults_to_separate_passes_but_old_trades_recipes_read_as_joint(tmp_path):
    r = Recipe(name="t").override({"train.method": "trades"})
    assert r.train.trades_bn == "separate"
    for value in ("adversarial", "joint"):
        assert r.override({"train.trades_bn": value}).train.trades_bn == value
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(r.override({"train.trades_bn": "adversarial"}).to_dict()))
    assert load_recipe(str(path)).train.trades_bn == "adversarial"
    # A TRADES run recorded before the option trained in one joint pass; other methods ignore it.
    for method, expected in (("trades", "joint"), ("pgd", "separate")):
        d = r.override({"train.method": method}).to_dict()
        del d["train"]["trades_bn"]
        assert Recipe.from_dict(d).train.trades_bn == expected


@pytest.mark.parametrize(
    "assignments, match",
    [
        ({"attack.step_rule": "momentum"}, "attack.step_rule"),
        ({"attack.step_schedule": "0:0.1"}, "attack.step_schedule"),
        ({"attack.step_schedule": "5:0.1,3:0.1"}, "attack.step_schedule"),
        ({"attack.step_schedule": "5"}, "attack.step_schedule"),
        ({"attack.name": "fgsm", "attack.step_rule": "adam"}, "attack.step_rule"),
        ({"attack.name": "nfgsm", "attack.step_schedule": "2:0.5"}, "attack.step_rule"),
        ({"train.trades_init": "normal"}, "train.trades_init"),
        ({"train.method": "pgd", "train.trades_init": "uniform"}, "train.trades_init"),
        ({"train.method": "trades", "train.trades_bn": "mixed"}, "train.trades_bn"),
        ({"train.method": "pgd", "train.trades_bn": "joint"}, "train.trades_bn"),
        ({"attack.steps": "5", "attack.step_schedule": "5:0.1"}, "boundaries below attack.steps"),
        ({"attack.step_schedule": "5:"}, "attack.step_schedule"),
        ({"attack.step_schedule": "5:1/0"}, "attack.step_schedule"),
        ({"eval.eps": "8/255:1"}, "eval.eps"),
    ],
)
def test_bad_step_rules_raise(assignments, match):
    with pytest.raises(ValueError, match=match):
        Recipe(name="t").override(assignments)


def test_the_training_attack_follows_the_recipe():
    from tfrobust.experiment import training_attack

    cfg = AttackConfig(name="pgd", eps=8 / 255, steps=10, step_size=0.1, step_rule="adam", step_schedule=((5, 0.1),))
    cfg.validate()
    attack = training_attack(cfg)
    assert (attack.step_rule, attack.step_schedule, attack.step_size, attack.select) == ("adam", ((5, 0.1),), 0.1, "last")


@pytest.mark.parametrize("given", [PREACT, PREACT + ".py", "recipes/" + PREACT + ".py"])
def test_a_shipped_recipe_loads_by_name_from_any_directory(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where no recipes/ folder is
    assert config.find_recipe(given) == os.path.join(REPO, "recipes", PREACT + ".py")
    assert load_recipe(given, "small").name.startswith(PREACT)


def test_a_path_that_exists_wins_over_a_shipped_name(tmp_path, monkeypatch):
    own = tmp_path / (PREACT + ".py")
    own.write_text(open(os.path.join(REPO, "recipes", PREACT + ".py")).read())
    monkeypatch.chdir(tmp_path)
    assert config.find_recipe(PREACT + ".py") == PREACT + ".py"
    assert config.find_recipe(str(own)) == str(own)


@pytest.mark.parametrize("given", ["no_such_recipe", "elsewhere/" + PREACT + ".py"])
def test_an_unknown_recipe_says_how_to_list_them(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="`tfrobust recipes` lists"):
        load_recipe(given)


def test_recipes_dir_prefers_the_installed_package_folder(tmp_path, monkeypatch):
    package = tmp_path / "site" / "tfrobust"
    (tmp_path / "site" / "recipes").mkdir(parents=True)  # another distribution's, beside the package
    monkeypatch.setattr(config, "PACKAGE_DIR", str(package))
    assert config.recipes_dir() == str(tmp_path / "site" / "recipes")  # a checkout's layout
    (package / "recipes").mkdir(parents=True)
    assert config.recipes_dir() == str(package / "recipes")  # an installed wheel's


def test_available_recipes_names_every_shipped_recipe_with_its_summary():
    recipes = config.available_recipes()
    files = [f[:-3] for f in os.listdir(os.path.join(REPO, "recipes")) if f.endswith(".py")]
    assert sorted(recipes) == sorted(files) and PREACT in recipes
    assert recipes[PREACT] and "\n" not in recipes[PREACT]


def test_a_linf_radius_above_the_pixel_range_is_refused_but_not_an_l2_one_or_a_stadv_flow_bound():
    with pytest.raises(ValueError, match=r"eval.eps must be at most 1 under the Linf norm .*write 8/255"):
        Recipe(name="t").override({"eval.eps": "0.3,8"})
    with pytest.raises(ValueError, match=r"attack.eps must be at most 1 under the Linf norm"):
        Recipe(name="t").override({"attack.eps": "8"})
    assert Recipe(name="t").override({"attack.eps": "1", "eval.eps": "1"}).eval_eps == (1.0,)
    assert Recipe(name="t").override({"attack.norm": "l2", "attack.eps": "3", "eval.eps": "3"}).eval_eps == (3.0,)
    static = {"attack.name": "stadv", "attack.eps": "2", "train.method": "static", "train.init_from": "base.keras"}
    assert Recipe(name="t").override(dict(static, **{"eval.eps": "8/255"})).attack.eps == 2.0
    # Without eval.eps the flow bound would be the evaluation's Linf radius.
    with pytest.raises(ValueError, match=r"attack.eps must be at most 1 under the Linf norm"):
        Recipe(name="t").override(static)
