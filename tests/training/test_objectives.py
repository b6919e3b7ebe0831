"""Training objectives: the batch split, what each objective asks of the step, and a new one added in one line."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.attacks import PGD
from tfrobust.training import AdversarialModel, objectives


class FakeStep:
    """A step whose attack adds 0.5 and whose logits are the images' first pixels, recording the calls."""

    def __init__(self, attack_bn="inference"):
        self.attack_bn = attack_bn
        self.calls = []

    def attack(self, x, y, seeds):
        self.calls.append(("attack", int(tf.shape(x)[0])))
        return x + 0.5

    def target_logits(self, x):
        self.calls.append(("target", int(tf.shape(x)[0])))
        return self._logits(x)

    def stateless_logits(self, x):
        self.calls.append(("stateless", int(tf.shape(x)[0])))
        return self._logits(x)

    def logits(self, x_clean, x_adv):
        self.calls.append(("logits", None if x_clean is None else int(tf.shape(x_clean)[0]),
                           None if x_adv is None else int(tf.shape(x_adv)[0])))
        parts = [t for t in (x_clean, x_adv) if t is not None]
        return self._logits(tf.concat(parts, 0))

    def cross_entropy(self, y, logits, generated):
        self.calls.append(("ce", int(tf.shape(y)[0])))
        self.generated = generated
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    @staticmethod
    def _logits(x):
        return tf.reshape(x, [tf.shape(x)[0], -1])[:, :3]


def _batch(n=6, generated=True):
    x = tf.reshape(tf.range(n * 3, dtype=tf.float32) / (n * 3), [n, 1, 1, 3])
    y = tf.constant(np.arange(n) % 3, tf.int64)
    seeds = tf.zeros([n, 2], tf.int64)
    flags = tf.constant([i % 3 == 0 for i in range(n)]) if generated else None
    return objectives.Batch(x, y, seeds, flags)


@pytest.mark.parametrize("ratio,clean", [(0.5, [0, 2, 4]), (1 / 3, [0, 3]), (2 / 3, [0, 1, 3, 4])])
def test_adversarial_split_picks_clean_examples_by_position(ratio, clean):
    clean_idx, adv_idx = objectives.Adversarial("pgd", ratio).split(6)
    assert clean_idx.numpy().tolist() == clean
    assert sorted(clean_idx.numpy().tolist() + adv_idx.numpy().tolist()) == list(range(6))


def test_adversarial_attacks_only_its_part_and_keeps_labels_flags_and_logits_aligned():
    batch, step = _batch(), FakeStep()
    out = objectives.Adversarial("pgd", 0.5)(step, batch)
    assert step.calls == [("attack", 3), ("logits", 3, 3), ("ce", 6)]
    (y_clean, logits_clean), (y_adv, logits_adv) = out.clean, out.adv
    assert y_clean.numpy().tolist() == [0, 2, 1] and y_adv.numpy().tolist() == [1, 0, 2]
    x = batch.x.numpy().reshape(6, 3)
    np.testing.assert_allclose(logits_clean.numpy(), x[[0, 2, 4]])
    np.testing.assert_allclose(logits_adv.numpy(), x[[1, 3, 5]] + 0.5)
    # The generated flags follow the examples into the training order.
    assert step.generated.numpy().tolist() == [True, False, False, False, True, False]


def test_adversarial_only_and_standard_train_on_one_part():
    step = FakeStep()
    out = objectives.Adversarial("fgsm_rs")(step, _batch())
    assert out.clean is None and step.calls == [("attack", 6), ("logits", None, 6), ("ce", 6)]
    step = FakeStep()
    out = objectives.Standard()(step, _batch())
    assert out.adv is None and step.calls == [("logits", 6, None), ("ce", 6)]


@pytest.mark.parametrize("bn,attack_bn,calls", [
    ("separate", "inference", [("target", 6), ("attack", 6), ("logits", 6, None), ("logits", None, 6), ("ce", 6)]),
    ("adversarial", "inference", [("target", 6), ("attack", 6), ("stateless", 6), ("logits", None, 6), ("ce", 6)]),
    # The clean pass is the attack's KL target too: computed once.
    ("adversarial", "batch_stats", [("stateless", 6), ("attack", 6), ("logits", None, 6), ("ce", 6)]),
    ("joint", "inference", [("target", 6), ("attack", 6), ("logits", 12, None), ("ce", 6)]),
])
def test_trades_passes_per_bn_mode(bn, attack_bn, calls):
    step = FakeStep(attack_bn)
    out = objectives.TRADES(beta=2.0, bn=bn)(step, _batch())
    assert step.calls == calls
    (_, logits_clean), (_, logits_adv) = out.clean, out.adv
    x = _batch().x.numpy().reshape(6, 3)
    np.testing.assert_allclose(logits_clean.numpy(), x)
    np.testing.assert_allclose(logits_adv.numpy(), x + 0.5)
    assert float(out.loss) > 0


def test_build_names_the_bad_argument():
    with pytest.raises(ValueError, match="method must be one of"):
        objectives.build("mart")
    with pytest.raises(ValueError, match="trades_init"):
        objectives.build("trades", trades_init="zeros")
    with pytest.raises(ValueError, match="trades_bn"):
        objectives.build("trades", trades_bn="both")
    assert objectives.build("trades", trades_beta=3.0).attack_overrides()["loss"] == "kl"
    assert objectives.build("nfgsm", clean_ratio=0.25).clean_ratio == 0.25


class CleanAndAdversarialAverage(objectives.Objective):
    """A method written for the test: the mean of the clean and the adversarial cross-entropy."""

    name = "average"

    def __call__(self, step, batch):
        x_adv = step.attack(batch.x, batch.y, batch.seeds)
        logits = step.logits(batch.x, x_adv)
        y = tf.concat([batch.y, batch.y], 0)
        n = tf.shape(batch.x)[0]
        return objectives.Outcome(step.cross_entropy(y, logits, None), (batch.y, logits[:n]), (batch.y, logits[n:]))


def test_a_new_method_is_one_objective_and_one_table_line(monkeypatch):
    monkeypatch.setitem(objectives.METHODS, "average", CleanAndAdversarialAverage)
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model = AdversarialModel(classifier, PGD(eps=0.1, steps=1, init="none"), method="average")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x = np.random.default_rng(0).uniform(size=(8, 4, 4, 1)).astype("float32")
    y = np.arange(8) % 3
    logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "clean_accuracy", "adv_accuracy"}
    # With a zero learning rate the loss is the objective's: the mean over clean and adversarial examples.
    x_adv = PGD(eps=0.1, steps=1, init="none")(classifier, tf.constant(x), tf.constant(y, tf.int64),
                                  tf.zeros([8, 2], tf.int32))
    ce = keras.losses.sparse_categorical_crossentropy(np.concatenate([y, y]), classifier(
        np.concatenate([x, x_adv])), from_logits=True)
    assert logs["loss"][0] == pytest.approx(float(np.mean(ce)), rel=1e-4)
