import keras
import numpy as np
import pytest

from tests import helpers
from tfrobust import cli
from tfrobust.attacks import PGD
from tfrobust.evaluation import robustness
from tfrobust.evaluation.batch_stats import BatchStatsClassifier
from tfrobust.models import mixbn


def _skewed_bn_model():
    # Moving statistics far from any real batch's: inference mode and batch
    # statistics then give clearly different logits.
    model = helpers.tiny_classifier(batch_norm=True)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 3.0, "float32"))
    bn.moving_variance.assign(np.full(bn.moving_variance.shape, 0.01, "float32"))
    return model


def test_batch_stats_classifier_normalises_with_the_batch_and_never_updates():
    model = _skewed_bn_model()
    before = [w.numpy().copy() for w in model.weights]
    x, y, _ = helpers.toy_data(n=16)
    wrapped = BatchStatsClassifier(model)
    logits = wrapped(x).numpy()
    expected, _ = model.stateless_call([v.value for v in model.trainable_variables],
                                       [v.value for v in model.non_trainable_variables], x, training=True)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-6)
    assert not np.allclose(logits, model(x, training=False).numpy(), atol=1e-2)
    report = robustness.evaluate(wrapped, x, y, [PGD(0.1, steps=2)], verbose=0, checks="off")
    assert report.results[0].robust.size == 16
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    with pytest.raises(TypeError, match="keras.Model"):
        BatchStatsClassifier(lambda x: x)


def _bn_model(strategy, synchronized):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                                 keras.layers.BatchNormalization(synchronized=synchronized),
                                 keras.layers.Flatten(), keras.layers.Dense(3)])


def test_batch_statistics_evaluation_of_synchronized_batchnorm_under_a_strategy_is_refused_clearly():
    model = _bn_model(helpers.mirrored_strategy(), synchronized=True)
    x, y, _ = helpers.toy_data(n=16)
    with pytest.raises(ValueError, match="cannot be used under MirroredStrategy"):
        robustness.evaluate(BatchStatsClassifier(model), x, y, [PGD(0.1, steps=2)], verbose=0, checks="off",
                            strategy=helpers.mirrored_strategy())
    # Without the strategy the same evaluation runs.
    report = robustness.evaluate(BatchStatsClassifier(model), x, y, [PGD(0.1, steps=2)], verbose=0, checks="off")
    assert report.results[0].robust.size == 16
    # A clean-only evaluation all-reduces outside any loop, which works under the strategy: it is not refused.
    report = robustness.evaluate(BatchStatsClassifier(model), x, y, [], verbose=0, checks="off",
                                 strategy=helpers.mirrored_strategy())
    assert report.clean_correct.size == 16


@pytest.mark.parametrize("synchronized", [True, False])
def test_clean_batch_statistics_logits_under_a_strategy_are_the_whole_batchs_when_synchronized(synchronized):
    import tensorflow as tf

    strategy = helpers.mirrored_strategy()
    model = _bn_model(strategy, synchronized)
    x, _, _ = helpers.toy_data(n=16)
    x[8:] = x[8:] * 0.3  # each replica's half has statistics unlike the whole batch's
    wrapped = BatchStatsClassifier(model)
    batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(16))))
    logits = tf.function(lambda b: strategy.gather(strategy.run(wrapped, args=(b,)), axis=0))(batch).numpy()
    one_device = BatchStatsClassifier(model)(x).numpy()
    if synchronized:
        np.testing.assert_allclose(logits, one_device, atol=1e-5)
    else:  # the control: each replica normalised its own half
        assert np.abs(logits - one_device).max() > 1e-2


def _mixbn_mnist_model(path):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    h = mixbn.MixBatchNormalization(name="mix")(h)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.ReLU()(h)))
    model = keras.Model(inputs, outputs)
    layer = model.get_layer("mix")
    layer.clean.moving_mean.assign(np.full(layer.clean.moving_mean.shape, 0.5, "float32"))
    model.save(path)


def test_cli_eval_with_batch_stats_and_a_mixbn_branch_and_mixbn_stats(tmp_path, capsys):
    path = str(tmp_path / "mix.keras")
    _mixbn_mnist_model(path)
    out = str(tmp_path / "r.json")
    args = ["eval", path, "--dataset", "mnist", "--attacks", "fgsm", "--n", "20", "--no-checks",
            "--bn", "batch_stats", "--bn-branch", "clean", "--json", out]
    assert cli.main(args) == 0
    import json

    with open(out) as f:
        assert "batch statistics" in json.load(f)["data"]
    png = str(tmp_path / "bn.png")
    assert cli.main(["mixbn-stats", path, "--png", png]) == 0
    text = capsys.readouterr().out
    assert "mean_shift" in text and "mix" in text
    assert open(png, "rb").read(4) == b"\x89PNG"
    plain = str(tmp_path / "plain.keras")
    helpers.tiny_classifier(input_shape=(28, 28, 1), num_classes=10, batch_norm=False).save(plain)
    with pytest.raises(SystemExit, match="MixBN"):
        cli.main(["eval", plain, "--dataset", "mnist", "--n", "4", "--bn-branch", "adv"])
