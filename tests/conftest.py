import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices let the MirroredStrategy tests run on one machine.
# This must happen before TF initialises its devices, i.e. before any op runs.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than about 60 s")
