"""Tests for tfrobust.attacks.registry: the one table of attack names and who reads it."""

import os
import re

import pytest

import tfrobust_cli
from tfrobust import config
from tfrobust.attacks import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name", registry.names())
def test_every_name_builds_and_its_config_rebuilds_the_same_attack(name):
    attack = registry.build(name, None if name == "stadv" else 0.1, "linf")
    assert attack.name == name and registry.spec(name).family in registry.FAMILIES
    again = registry.from_config(attack.get_config())
    assert type(again) is type(attack) and again.get_config() == attack.get_config()


def test_a_config_with_its_own_name_is_read_by_its_keys():
    attack = registry.build("pgd", 0.1, steps=3)
    cfg = dict(attack.get_config(), name="my_pgd")
    assert registry.from_config(cfg).get_config() == cfg


def test_a_name_fixes_its_parameters():
    assert registry.build("pgd_margin", 0.1).loss == "margin"
    with pytest.raises(ValueError, match="pgd_margin fixes loss"):
        registry.build("pgd_margin", 0.1, loss="ce")
    # Defaults are the caller's to change.
    assert registry.build("fab-t", 0.1, target_classes=3).target_classes == 3


def test_spellings_and_unknown_names():
    assert registry.canonical("apgd_ce") == "apgd-ce" and registry.canonical("pgd-margin") == "pgd_margin"
    with pytest.raises(ValueError, match="expected one of"):
        registry.spec("pgdd")


def test_recipes_read_the_table():
    assert config.TRAIN_ATTACKS == registry.names(train=True)
    assert config.EVAL_ATTACKS == registry.names(evaluate=True)


def test_the_command_lines_help_names_every_evaluation_attack():
    # The parser does not import TensorFlow, so it cannot read the table: it lists the names, and this checks them.
    parser = tfrobust_cli.build_parser()
    eval_parser = parser._subparsers._group_actions[0].choices["eval"]
    help_text = next(a.help for a in eval_parser._actions if "--attacks" in a.option_strings)
    listed = re.findall(r"[a-z][a-z0-9_-]+", help_text.split(":", 1)[1].split("(default")[0])
    assert set(registry.names(evaluate=True)) <= set(listed)
    assert set(listed) - set(registry.names(evaluate=True)) <= {"or", "none", "for", "clean", "accuracy", "only"}


def test_readme_documents_every_evaluation_attack():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    table = readme[readme.index("| name | attack | its options |"):]
    table = table[: table.index("\n\n")]
    documented = set(re.findall(r"`([a-z][a-z0-9_-]+)`", "\n".join(row.split("|")[1] for row in table.splitlines())))
    assert set(registry.names(evaluate=True)) <= documented, set(registry.names(evaluate=True)) - documented
