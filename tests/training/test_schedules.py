import keras
import numpy as np
import pytest

from tfrobust.training.schedules import PiecewiseLinear


def test_cyclic_schedule_values():
    s = PiecewiseLinear([0, 40, 100], [0.0, 1.0, 0.0])
    got = [float(s(t)) for t in (0, 20, 40, 70, 100, 150)]
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_serialises():
    s = PiecewiseLinear([0, 10], [1.0, 0.5])
    t = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert float(t(5)) == pytest.approx(0.75)


def test_bad_boundaries():
    with pytest.raises(ValueError, match="increase"):
        PiecewiseLinear([0, 0], [1.0, 2.0])
