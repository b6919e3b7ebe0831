import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfrobust.attacks import FGSM, PGD
from tfrobust.attacks import base as attack_base
from tfrobust.training import AdversarialModel, adversarial_model, objectives


def _dataset(n=32, batch=16, with_seeds=True):
    x, y, s = helpers.toy_data(n=n)
    features = {"image": x, "seed": s} if with_seeds else x
    return tf.data.Dataset.from_tensor_slices((features, y)).batch(batch)


def _model(method="pgd", batch_norm=False, **kwargs):
    attack = None if method == "standard" else kwargs.pop("attack", PGD(0.1, steps=2, select="last"))
    model = AdversarialModel(
        helpers.tiny_classifier(batch_norm=batch_norm), attack=attack, method=method,
        eval_attack=kwargs.pop("eval_attack", PGD(0.1, steps=2)), **kwargs,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


@pytest.mark.parametrize(
    "method, kwargs",
    [
        ("pgd", {}),
        ("pgd", {"clean_ratio": 0.5}),
        ("trades", {}),
        # The clean pass without moving statistics runs through stateless_call in each replica.
        ("trades", {"trades_bn": "adversarial"}),
        # Gowal et al.'s training attack: Adam steps from a uniform start; Adam's moments are per element.
        ("trades", {"attack": PGD(0.1, steps=3, select="last", step_rule="adam", step_size=0.05,
                                  step_schedule=((2, 0.1),)), "trades_init": "uniform"}),
        # A batch-statistics attack: in "adversarial" mode its KL target is the clean training pass, reused.
        ("trades", {"attack": PGD(0.1, steps=2, select="last", bn="batch_stats"), "trades_bn": "adversarial"}),
        ("fgsm_rs", {"attack": FGSM(0.1, random_start=True)}),
        ("standard", {}),
    ],
)
def test_mirrored_strategy_matches_single_device(method, kwargs):
    # Two replicas of 8 must give the same update as one device on the global
    # batch of 16: the loss is scaled per replica, seeds travel per element.
    # No BatchNorm here: unsynchronised BN sees per-replica batch statistics.
    weights = []
    for strategy in [tf.distribute.get_strategy(), helpers.mirrored_strategy()]:
        with strategy.scope():
            model = _model(method, **dict(kwargs))
        model.fit(_dataset(), epochs=1, verbose=0)
        weights.append([w.numpy() for w in model.classifier.weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # And training changed something, so the comparison is not vacuous.
    fresh = helpers.tiny_classifier(batch_norm=False).weights
    assert any(not np.allclose(w, f.numpy()) for w, f in zip(weights[0], fresh))


def _bn_classifier(synchronized):
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(momentum=0.5, synchronized=synchronized),
        keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3),
    ])


def _fit_bn_model(strategy, synchronized, method, **kwargs):
    with strategy.scope():
        model = AdversarialModel(_bn_classifier(synchronized), attack=PGD(0.1, steps=2, select="last"),
                                 method=method, eval_attack=None, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(_dataset(), epochs=1, verbose=0)
    # Every weight, the moving statistics included.
    return [w.numpy() for w in model.classifier.weights]


@pytest.mark.parametrize("method, kwargs", [
    ("pgd", {}),
    ("pgd", {"clean_ratio": 0.5}),  # BN normalises clean and adversarial halves together
    ("trades", {}),
    ("trades", {"trades_bn": "adversarial"}),
])
def test_synchronized_batchnorm_under_mirrored_strategy_matches_single_device(method, kwargs):
    single, mirrored = (_fit_bn_model(strategy, True, method, **kwargs)
                        for strategy in (tf.distribute.get_strategy(), helpers.mirrored_strategy()))
    for a, b in zip(single, mirrored):
        # rtol: the synchronised variance is E[x^2] - E[x]^2, rounded differently.
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_plain_batchnorm_under_mirrored_strategy_normalises_each_replica_alone():
    # The control for the test above: without synchronisation two replicas of
    # 8 do not train as one device on 16, so that test can tell the two apart.
    single, mirrored = (_fit_bn_model(strategy, False, "pgd")
                        for strategy in (tf.distribute.get_strategy(), helpers.mirrored_strategy()))
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)) > 1e-3


@pytest.mark.parametrize("replicas", [2, 1])  # one replica all-reduces through merge_call too
def test_a_batch_statistics_attack_on_synchronized_batchnorm_under_a_strategy_is_refused_clearly(replicas):
    strategy = helpers.mirrored_strategy() if replicas == 2 else tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = AdversarialModel(_bn_classifier(True), attack=PGD(0.1, steps=2, select="last", bn="batch_stats"),
                                 eval_attack=None)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    with pytest.raises(ValueError, match="cannot be used under MirroredStrategy"):
        model.fit(_dataset(), epochs=1, verbose=0)


def test_a_synchronized_batchnorm_model_with_a_batch_statistics_attack_it_does_not_run_is_not_refused(tmp_path):
    # Standard training never runs the attack, and a saved model reloaded under a strategy may only be evaluated:
    # only tracing the attack is refused.
    attack = PGD(0.1, steps=2, select="last", bn="batch_stats")
    with helpers.mirrored_strategy().scope():
        model = AdversarialModel(_bn_classifier(True), attack=attack, method="standard", eval_attack=None)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(_dataset(), epochs=1, verbose=0)
    AdversarialModel(_bn_classifier(True), attack=attack, eval_attack=None).save(tmp_path / "m.keras")
    with helpers.mirrored_strategy().scope():
        loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.attack.bn == "batch_stats"


def test_a_batch_statistics_attack_on_synchronized_batchnorm_is_refused_when_traced_under_any_strategy_scope():
    # A model built outside the strategy's scope, then run under it, is caught as its attack is traced.
    model = _bn_classifier(True)
    attack = PGD(0.1, steps=2, select="last", bn="batch_stats")
    x, y, seeds = helpers.toy_data(n=8)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match="cannot be used under MirroredStrategy"):
        strategy.run(tf.function(lambda x, y, s: attack(model, x, y, s)), args=(x, y, seeds))


def test_strategy_merges_as_tf_decides():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert attack_base.strategy_merges(mirrored) and attack_base.strategy_merges(mirrored, xla=True)
    assert not attack_base.strategy_merges(tf.distribute.get_strategy())
    # TF's flag inside an XLA-compiled replica function on CPUs: merge_call still (only all-GPU skips it).
    seen = []
    mirrored.run(tf.function(lambda: seen.append(attack_base.strategy_merges(tf.distribute.get_strategy())) or 0,
                             jit_compile=True))
    assert seen == [True]


@pytest.mark.parametrize("devices, xla, merges", [
    (["/job:localhost/replica:0/task:0/device:CPU:0"], True, True),
    (["/job:localhost/replica:0/task:0/device:GPU:0", "/job:localhost/replica:0/task:0/device:GPU:1"], True,
     False),
    (["/job:localhost/replica:0/task:0/device:GPU:0"], False, True),
    (["/job:worker/replica:0/task:0/device:GPU:0", "/job:worker/replica:0/task:0/device:CPU:0"], True, True),
])
def test_predicted_merge_call_follows_xla_and_the_devices(devices, xla, merges, monkeypatch):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    monkeypatch.setattr(type(strategy.extended), "worker_devices", property(lambda self: tuple(devices)))
    assert attack_base.strategy_merges(strategy, xla=xla) is merges


def test_a_batch_statistics_attack_on_synchronized_batchnorm_without_a_strategy_trains():
    model = AdversarialModel(_bn_classifier(True), attack=PGD(0.1, steps=2, select="last", bn="batch_stats"),
                             eval_attack=None)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    before = [w.numpy() for w in model.classifier.trainable_weights]
    model.fit(_dataset(), epochs=1, verbose=0)
    assert not np.allclose(before[0], model.classifier.trainable_weights[0].numpy())


@pytest.mark.parametrize("bn", ["inference", "batch_stats"])
@pytest.mark.parametrize("method, kwargs, per_step", [
    ("pgd", {}, 1),
    ("trades", {"trades_bn": "joint"}, 1),
    ("trades", {"trades_bn": "adversarial"}, 1),
    ("trades", {}, 2),  # "separate": the clean and the adversarial pass both update
])
def test_batchnorm_statistics_update_only_in_the_training_passes(method, kwargs, per_step, bn):
    model = _model(method, batch_norm=True, attack=PGD(0.1, steps=3, select="last", bn=bn),
                   eval_attack=None, **kwargs)
    model.fit(_dataset(n=48), epochs=1, verbose=0)
    assert helpers.bn_updates(model.classifier) == 3 * per_step  # 3 steps; the attacks add none


def _stateless(clf, x, non_trainable=None):
    """Training-mode logits and the moving statistics one pass over `x` would leave."""
    logits, non_trainable = clf.stateless_call(
        [v.value for v in clf.trainable_variables],
        non_trainable or [v.value for v in clf.non_trainable_variables], x, training=True)
    return logits.numpy(), non_trainable


@pytest.mark.parametrize("trades_bn", ["separate", "adversarial", "joint"])
def test_trades_passes_normalise_and_update_batchnorm_as_asked(trades_bn):
    model = _model("trades", batch_norm=True, trades_bn=trades_bn, eval_attack=None)
    clf = model.classifier
    x, _, _ = helpers.toy_data()
    x_adv = np.clip(1.0 - x + 0.2, 0.0, 1.0).astype("float32")  # statistics unlike x's
    clf(x[:1])
    clean_alone, after_clean = _stateless(clf, x)
    _, clean_then_adv = _stateless(clf, x_adv, after_clean)
    adv_alone_logits, adv_alone = _stateless(clf, x_adv)
    joint_logits, after_joint = _stateless(clf, np.concatenate([x, x_adv]))
    expected_logits = {"separate": (clean_alone, adv_alone_logits), "adversarial": (clean_alone, adv_alone_logits),
                       "joint": (joint_logits[:len(x)], joint_logits[len(x):])}
    expected_stats = {"separate": clean_then_adv, "adversarial": adv_alone, "joint": after_joint}
    assert np.abs(clean_alone - joint_logits[:len(x)]).max() > 1e-3
    for a, b in (("separate", "adversarial"), ("separate", "joint"), ("adversarial", "joint")):
        assert max(np.abs(u.numpy() - v.numpy()).max() for u, v in zip(expected_stats[a], expected_stats[b])) > 1e-4

    with tf.GradientTape() as tape:
        step = adversarial_model._Step(model, tape, tf.constant(1.0))
        step.attack = lambda *_: tf.constant(x_adv)
        y = tf.zeros([len(x)], tf.int64)
        outcome = model.objective(step, objectives.Batch(tf.constant(x), y, tf.zeros([len(x), 2], tf.int32), None))
    logits = outcome.clean[1], outcome.adv[1]
    for got, expected in zip(logits, expected_logits[trades_bn]):
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    for v, e in zip(clf.non_trainable_variables, expected_stats[trades_bn]):
        np.testing.assert_allclose(v.numpy(), e.numpy(), atol=1e-6)


@pytest.mark.parametrize("attack_bn", ["inference", "batch_stats"])
@pytest.mark.parametrize("trades_bn", ["separate", "adversarial", "joint"])
def test_a_trades_step_follows_the_gradient_of_its_loss(trades_bn, attack_bn):
    # TRADES' loss written out from its definition, with training-mode (batch statistics) passes computed
    # statelessly: CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)), both terms differentiated. The
    # attack's KL target is the clean pass in the attack's BN mode.
    beta, lr = 3.0, 0.5
    model = _model("trades", batch_norm=True, trades_bn=trades_bn, trades_beta=beta, eval_attack=None,
                   attack=PGD(0.1, steps=2, select="last", bn=attack_bn))
    clf = model.classifier
    x, y, s = helpers.toy_data()
    clf(x[:1])
    non_trainable = [v.value for v in clf.non_trainable_variables]

    def forward(weights, images):
        return clf.stateless_call(weights, non_trainable, images, training=True)[0]

    weights = [tf.Variable(v.numpy()) for v in clf.trainable_variables]
    target = forward(weights, x) if attack_bn == "batch_stats" else clf(x, training=False)
    x_adv = model._train_attack_fn(tf.constant(x), tf.nn.softmax(target), tf.constant(s), tf.constant(1.0))
    with tf.GradientTape() as tape:
        if trades_bn == "joint":
            both = forward(weights, tf.concat([x, x_adv], 0))
            clean, adv = both[:len(x)], both[len(x):]
        else:
            clean, adv = forward(weights, x), forward(weights, x_adv)
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, clean, from_logits=True))
        p = tf.nn.softmax(clean)
        kl = tf.reduce_mean(tf.reduce_sum(p * (tf.math.log(p) - tf.nn.log_softmax(adv)), -1))
        loss = ce + beta * kl
    expected = [w.numpy() - lr * g.numpy() for w, g in zip(weights, tape.gradient(loss, weights))]
    model.train_step(({"image": tf.constant(x), "seed": tf.constant(s)}, tf.constant(y)))
    for v, e in zip(clf.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), e, atol=2e-5)


@pytest.mark.parametrize("trades_bn, attack_bn, passes", [
    ("adversarial", "batch_stats", 2), ("joint", "batch_stats", 2), ("separate", "batch_stats", 3),
    ("separate", "inference", 3), ("adversarial", "inference", 3),
])
def test_trades_computes_the_clean_pass_once_when_the_attack_uses_batch_statistics(trades_bn, attack_bn, passes):
    # The KL target of a batch-statistics attack is the clean training pass of the adversarial mode, so that
    # step makes two forward passes (clean, adversarial) besides the attack's, not three; joint makes two too
    # (target, joint pass). "separate" keeps three: see the next test.
    model = _model("trades", batch_norm=True, trades_bn=trades_bn, eval_attack=None,
                   attack=PGD(0.1, steps=1, select="last", bn=attack_bn))
    clf = model.classifier
    x, y, s = helpers.toy_data()
    clf(x[:1])
    model._train_attack_fn = lambda x_, *rest: tf.clip_by_value(x_ + 0.05, 0.0, 1.0)
    calls = []
    call = clf.call
    clf.call = lambda *args, **kwargs: (calls.append(1), call(*args, **kwargs))[1]
    model.train_step(({"image": tf.constant(x), "seed": tf.constant(s)}, tf.constant(y)))
    assert len(calls) == passes


@pytest.mark.parametrize("trades_bn", ["separate", "adversarial"])
def test_a_batch_statistics_attack_sees_the_state_its_target_saw(trades_bn):
    # Dropout's seed is state that a batch-statistics pass reads. The attack and its KL target must both see
    # the state from before the step; a "separate" clean training pass run first would advance the seed.
    keras.utils.set_random_seed(0)
    clf = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                            keras.layers.Dropout(0.3), keras.layers.Flatten(), keras.layers.Dense(3)])
    attack = PGD(0.1, steps=2, select="last", bn="batch_stats")
    model = AdversarialModel(clf, attack=attack, method="trades", trades_bn=trades_bn, eval_attack=None)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    x, y, s = helpers.toy_data()
    target = tf.nn.softmax(attack_base.forward_fn(clf, "batch_stats")(tf.constant(x)))
    expected = model._train_attack_fn(tf.constant(x), target, tf.constant(s), tf.constant(1.0)).numpy()
    seen = []
    attack_fn = model._train_attack_fn
    model._train_attack_fn = lambda *args: (seen.append(attack_fn(*args)), seen[-1])[1]
    model.train_step(({"image": tf.constant(x), "seed": tf.constant(s)}, tf.constant(y)))
    np.testing.assert_allclose(seen[0].numpy(), expected, atol=1e-6)


def test_trades_gradients_flow_through_the_clean_pass_that_keeps_no_statistics():
    # "adversarial" differs from "separate" only in which pass updates the moving statistics: one step of
    # each must move the weights alike, which fails if the clean pass (stateless) carried no gradient.
    weights = {}
    for trades_bn in ("separate", "adversarial", "joint"):
        keras.utils.set_random_seed(0)
        model = _model("trades", batch_norm=True, trades_bn=trades_bn, eval_attack=None)
        model.fit(_dataset(n=16), epochs=1, verbose=0)
        weights[trades_bn] = [w.numpy() for w in model.classifier.trainable_variables]
    for a, b in zip(weights["separate"], weights["adversarial"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(weights["separate"], weights["joint"]))


def test_fit_evaluate_predict_report_clean_and_robust_accuracy():
    model = _model("pgd")
    history = model.fit(_dataset(), epochs=2, verbose=0)
    assert set(history.history) == {"loss", "adv_accuracy"}
    result = model.evaluate(_dataset(), verbose=0, return_dict=True)
    assert set(result) == {"loss", "clean_accuracy", "robust_accuracy"}
    assert result["robust_accuracy"] <= result["clean_accuracy"] + 1e-6
    x, _, _ = helpers.toy_data(n=32)
    np.testing.assert_allclose(model.predict(_dataset(), verbose=0), model.classifier(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), model.classifier(x).numpy(), atol=1e-5)


def test_mixed_batches_report_both_accuracies():
    model = _model("pgd", clean_ratio=0.5)
    history = model.fit(_dataset(), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "clean_accuracy", "adv_accuracy"}


def test_clean_ratio_picks_every_other_example_at_one_half():
    model = _model("pgd", clean_ratio=0.5)
    clean, attacked = model.objective.split(8)
    np.testing.assert_array_equal(clean.numpy(), np.arange(0, 8, 2))
    np.testing.assert_array_equal(attacked.numpy(), np.arange(1, 8, 2))
    model = _model("pgd", clean_ratio=0.25)
    np.testing.assert_array_equal(model.objective.split(8)[0].numpy(), np.arange(0, 8, 4))


def test_batches_without_seeds_train_deterministically():
    runs = []
    for _ in range(2):
        model = _model("pgd")
        model.fit(_dataset(with_seeds=False), epochs=1, verbose=0)
        runs.append(model.classifier.weights[0].numpy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_eps_warmup_ramps_linearly():
    model = _model("pgd", eps_warmup_steps=4)
    scales = []
    for _ in range(5):
        scales.append(float(model.eps_scale()))
        model.optimizer.iterations.assign_add(1)
    np.testing.assert_allclose(scales, [0.25, 0.5, 0.75, 1.0, 1.0])


@pytest.mark.parametrize("bn", ["inference", "batch_stats"])
def test_trades_target_uses_the_attacks_batchnorm_mode(bn):
    model = _model("trades", batch_norm=True, attack=PGD(0.1, steps=1, select="last", bn=bn), eval_attack=None)
    x, y, s = helpers.toy_data()
    model.fit(_dataset(), epochs=1, verbose=0)  # moving statistics now differ from the batch's
    clf = model.classifier
    batch_logits, _ = clf.stateless_call([v.value for v in clf.trainable_variables],
                                         [v.value for v in clf.non_trainable_variables], x, training=True)
    expected = {"batch_stats": tf.nn.softmax(batch_logits).numpy(),
                "inference": tf.nn.softmax(clf(x, training=False)).numpy()}
    assert np.abs(expected["batch_stats"] - expected["inference"]).max() > 1e-3
    seen = []
    attack_fn = model._train_attack_fn
    model._train_attack_fn = lambda x_, probs, *rest: (seen.append(probs.numpy()), attack_fn(x_, probs, *rest))[1]
    model.train_step(({"image": tf.constant(x), "seed": tf.constant(s)}, tf.constant(y)))
    np.testing.assert_allclose(seen[0], expected[bn], atol=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    attack = PGD(0.1, steps=2, select="last", step_rule="adam", step_size=0.05, step_schedule=((1, 0.1),))
    model = _model("trades", batch_norm=True, trades_beta=3.0, trades_init="uniform", attack=attack)
    assert model.attack.init == "uniform" and model.attack.loss == "kl"
    model.fit(_dataset(), epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, AdversarialModel)
    assert loaded.method == "trades" and loaded.trades_beta == 3.0 and loaded.trades_init == "uniform"
    assert loaded.trades_bn == "separate"
    assert loaded.attack.step_rule == "adam" and loaded.attack.step_schedule == ((1, 0.1),)
    assert loaded.attack == model.attack and loaded.eval_attack == model.eval_attack
    x, _, _ = helpers.toy_data()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())


def test_models_saved_before_trades_bn_load_with_the_joint_pass():
    config = _model("trades", batch_norm=True, trades_bn="adversarial").get_config()
    assert config["trades_bn"] == "adversarial"
    del config["trades_bn"]
    assert AdversarialModel.from_config(config).trades_bn == "joint"
    config = _model("pgd").get_config()
    del config["trades_bn"]
    assert AdversarialModel.from_config(config).trades_bn == "separate"  # not TRADES: the default stands


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "madry"}, ValueError, "method='madry'"),
        ({"method": "pgd", "attack": None}, ValueError, "attack=None"),
        ({"method": "pgd", "attack": "pgd"}, TypeError, "attack=str"),
        ({"clean_ratio": 1.0}, ValueError, "clean_ratio=1.0"),
        ({"eps_warmup_steps": -1}, ValueError, "eps_warmup_steps=-1"),
        ({"method": "trades", "trades_init": "normal"}, ValueError, "trades_init='normal'"),
        ({"method": "trades", "trades_bn": "mixed"}, ValueError, "trades_bn='mixed'"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    kwargs.setdefault("attack", PGD(0.1))
    with pytest.raises(error, match=match):
        AdversarialModel(helpers.tiny_classifier(), **kwargs)


def test_uint8_images_are_rejected():
    model = _model("pgd")
    x, y, _ = helpers.toy_data()
    with pytest.raises(TypeError, match="uint8"):
        model.fit((x * 255).astype("uint8"), y, epochs=1, verbose=0)


def _nan_images(x):
    x = x.copy()
    x[3, 1, 1, 0] = np.nan
    return x


def _inf_images(x):
    x = x.copy()
    x[5, 0, 0, 0] = -np.inf
    return x


# (what is wrong, (x, y) from the toy data) -> (error, message naming fit's argument)
_BAD_FIT_INPUTS = [
    ("nan images", lambda x, y: (_nan_images(x), y), ValueError, "x must be finite pixel values"),
    ("inf images", lambda x, y: (_inf_images(x), y), ValueError, "x must be finite pixel values"),
    ("0-255 float images", lambda x, y: (x * 255, y), ValueError, "x must lie in \\[0, 1\\]"),
    ("float labels", lambda x, y: (x, y.astype("float32")), TypeError, "y must hold integer class indices"),
    ("one-hot labels", lambda x, y: (x, np.eye(3, dtype="float32")[y]), ValueError, "not one-hot"),
    ("labels out of range", lambda x, y: (x, y + 1), ValueError, "y must be class indices in \\[0, 3\\)"),
    ("negative labels", lambda x, y: (x, y - 1), ValueError, "y must be class indices in \\[0, 3\\)"),
]


@pytest.mark.parametrize("attack_jit", [False, True])
@pytest.mark.parametrize("case, corrupt, error, match", _BAD_FIT_INPUTS, ids=[c[0] for c in _BAD_FIT_INPUTS])
def test_fit_refuses_bad_images_and_labels_naming_the_argument(case, corrupt, error, match, attack_jit):
    # attack_jit=True: the attack runs compiled with XLA, which drops asserts; the step checks the batch before it.
    model = _model("pgd", attack_jit=attack_jit)
    x, y, _ = helpers.toy_data(n=8)
    with pytest.raises(error, match=match):
        model.fit(*corrupt(x, y), batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("case, corrupt, error, match",
                         [c for c in _BAD_FIT_INPUTS if c[0] in ("nan images", "labels out of range")],
                         ids=["nan images", "labels out of range"])
def test_evaluate_refuses_bad_images_and_labels(case, corrupt, error, match):
    model = _model("pgd")
    x, y, _ = helpers.toy_data(n=8)
    with pytest.raises(error, match=match):
        model.evaluate(*corrupt(x, y), batch_size=8, verbose=0)


def test_fit_refuses_labels_and_images_of_different_lengths():
    x, y, _ = helpers.toy_data(n=8)
    static = tf.data.Dataset.from_tensors((x, y[:6]))
    with pytest.raises(ValueError, match="y must hold one label per image in x"):
        _model("pgd").fit(static, epochs=1, verbose=0)
    # Lengths that only the running graph knows.
    dynamic = tf.data.Dataset.from_generator(
        lambda: iter([(x, y[:6])]),
        output_signature=(tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([None], tf.int64)))
    with pytest.raises(ValueError, match="y must hold one label per image in x. Received: labels, images = 6 8"):
        _model("pgd").fit(dynamic, epochs=1, verbose=0)


def test_fit_refuses_an_empty_batch():
    x, y, _ = helpers.toy_data(n=8)
    with pytest.raises(ValueError, match="x is empty"):
        _model("pgd").fit(tf.data.Dataset.from_tensors((x[:0], y[:0])), epochs=1, verbose=0)


def test_fit_takes_labels_of_shape_n_by_1_as_a_vector():
    x, y, _ = helpers.toy_data(n=8)
    a, b = _model("pgd"), _model("pgd")
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.fit(x, y[:, None], batch_size=8, epochs=1, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_the_input_check_runs_in_eager_steps_too():
    model = _model("pgd")
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    x, y, _ = helpers.toy_data(n=8)
    with pytest.raises(ValueError, match="x must be finite pixel values"):
        model.fit(_nan_images(x), y, batch_size=8, epochs=1, verbose=0)
