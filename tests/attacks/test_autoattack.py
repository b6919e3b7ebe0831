import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import build, registry
from tfrobust.attacks.autoattack import AutoAttack
from tfrobust.attacks.fab import FAB
from tfrobust.attacks.square import Square


def _correct(model, x, y):
    return np.argmax(model(x, training=False), -1) == y


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.25), ("l1", 1.0)])
def test_standard_cascade_equals_the_and_of_its_parts_on_the_same_seeds(norm, eps):
    model = helpers.tiny_classifier(num_classes=5)
    x, _, seeds = helpers.toy_data(n=32, num_classes=5)
    y = np.argmax(model(x, training=False), -1)  # every point starts robust
    # One step and one target keep the white-box parts weak enough that
    # each of them breaks points the earlier ones left.
    attack = AutoAttack(eps, norm=norm, steps=1, target_classes=1, queries=15)
    parts = attack.components
    assert [a.name for a in parts] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    _, after = attack.run(model, x, y, seeds)
    alone = [_correct(model, part(model, x, y, seeds), y) for part in parts]
    for i in range(len(parts)):
        np.testing.assert_array_equal(after[i].numpy(), np.logical_and.reduce(alone[:i + 1]), err_msg=parts[i].name)
    # Not vacuous: APGD-T and FAB-T each break points every earlier part left, and some points are left.
    for i in (1, 2):
        assert np.any(np.logical_and.reduce(alone[:i]) & ~alone[i]), parts[i].name
    assert 0 < after[-1].numpy().sum() < len(x)


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l1", 1.0)])
def test_eager_cascade_gives_each_run_only_the_points_earlier_runs_left(norm, eps):
    model = helpers.tiny_classifier(num_classes=5)
    x, _, seeds = helpers.toy_data(n=32, num_classes=5)
    y = np.argmax(model(x, training=False), -1)
    attack = AutoAttack(eps, norm=norm, steps=1, target_classes=3, queries=15)
    calls = []

    def call(part, xs, ys, ss):
        calls.append((part, len(xs), int(np.sum(_correct(model, xs, ys)))))
        return part(model, xs, ys, ss)

    _, after = attack.run(model, x, y, seeds, call=call)
    # Traced, the components stay whole: the same points come out robust after each.
    _, traced = tf.function(lambda: attack.run(model, x, y, seeds))()
    for i, part in enumerate(attack.components):
        np.testing.assert_array_equal(after[i].numpy(), traced[i].numpy(), err_msg=part.name)
    expected = [(0, r) for r in range(5 if norm == "l1" else 1)] + [(t, 0) for t in (1, 2, 3)] * 2 + [(0, 0)]
    assert [getattr(c[0], "target", 0) for c in calls] == [k[0] for k in expected]
    assert [getattr(c[0], "restart", 0) for c in calls] == [k[1] for k in expected]
    assert [c[0].name for c in calls] == ["apgd-ce"] * (5 if norm == "l1" else 1) + ["apgd-t"] * 3 + ["fab-t"] * 3 + [
        "square"]
    # Every run gets exactly the points still robust, and later runs get fewer: the reference's cost.
    assert all(size == robust for _, size, robust in calls)
    sizes = [size for _, size, _ in calls]
    assert sizes == sorted(sizes, reverse=True)
    assert any(b[1] < a[1] for a, b in zip(calls, calls[1:]) if a[0].name == b[0].name), "no run within a component"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_versions_have_the_references_components(norm):
    standard = AutoAttack(0.1, norm=norm)
    assert [(a.name, getattr(a, "restarts", None)) for a in standard.components] == [
        ("apgd-ce", 1), ("apgd-t", 1), ("fab-t", 1), ("square", 1)]
    apgd_t, fab_t, square = standard.components[1:]
    assert apgd_t.target_classes == fab_t.target_classes == 9 and apgd_t.steps == fab_t.steps == 100
    assert (fab_t.alpha_max, fab_t.eta, fab_t.beta) == (0.1, 1.05, 0.9)
    assert (square.queries, square.p_init, square.rescale_schedule, square.loss) == (5000, 0.8, False, "margin")
    assert all(a.norm == norm and a.eps == 0.1 for a in standard.components)

    plus = AutoAttack(0.1, norm=norm, version="plus")
    assert [(a.name, a.restarts) for a in plus.components] == [
        ("apgd-ce", 5), ("apgd-dlr", 5), ("fab", 5), ("square", 1), ("apgd-t", 1), ("fab-t", 1)]
    assert isinstance(plus.components[2], FAB) and plus.components[2].target_classes is None
    assert isinstance(plus.components[3], Square) and plus.components[3].queries == 5000

    rand = AutoAttack(0.1, norm=norm, version="rand")
    assert [(a.name, a.restarts, a.eot) for a in rand.components] == [("apgd-ce", 1, 20), ("apgd-dlr", 1, 20)]
    assert not any(getattr(a, "large_eps", False) for a in plus.components + rand.components)


def test_l1_standard_has_the_references_components():
    # The reference's set_version for L1: APGD-CE 5 restarts and APGD-T 5 targets, both with
    # use_largereps; FAB-T 9 targets; Square 5000 queries.
    standard = AutoAttack(12.0, norm="l1")
    assert [(a.name, getattr(a, "restarts", None)) for a in standard.components] == [
        ("apgd-ce", 5), ("apgd-t", 1), ("fab-t", 1), ("square", 1)]
    apgd_ce, apgd_t, fab_t, square = standard.components
    assert apgd_ce.large_eps and apgd_t.large_eps and (apgd_t.target_classes, fab_t.target_classes) == (5, 9)
    assert all(a.norm == "l1" and a.eps == 12.0 for a in standard.components)
    assert (square.queries, square.rescale_schedule) == (5000, False)
    assert AutoAttack(12.0, norm="l1", target_classes=3).components[1].target_classes == 3
    with pytest.raises(ValueError, match="Received: norm='l0'"):
        AutoAttack(12.0, norm="l0")


def test_names_and_config_record_the_version_and_every_component():
    for name, version in (("autoattack", "standard"), ("autoattack-plus", "plus"), ("autoattack-rand", "rand")):
        attack = build(name, 8 / 255, "l2" if version == "plus" else "linf", steps=7)
        config = attack.get_config()
        assert (attack.name, config["version"]) == (name, version)
        assert [c["name"] for c in config["components"]] == [a.name for a in attack.components]
        assert all(c["steps"] == 7 for c in config["components"] if "steps" in c)
        assert registry.from_config(config) == attack
        assert registry.family(name) == "autoattack"
    fab_config = build("autoattack", 0.1).get_config()["components"][2]
    assert registry.from_config(fab_config) == FAB(0.1, target_classes=9, name="fab-t")
    with pytest.raises(ValueError, match="Received"):
        AutoAttack(0.1, version="fast")
