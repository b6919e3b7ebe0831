import keras
import pytest


@pytest.fixture(autouse=True)
def _seeded():
    # Model weights are random; a fixed seed makes every check reproducible.
    keras.utils.set_random_seed(0)
