"""Learning-rate schedules used by the recipes."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfrobust")
class PiecewiseLinear(keras.optimizers.schedules.LearningRateSchedule):
    """Linear interpolation between (step, value) knots, constant outside them.

    Wong et al.'s cyclic schedule ("Fast is better than free", arXiv 2001.03994)
    is `PiecewiseLinear([0, 0.4 * T, T], [0, peak, 0])`.

    Args:
        boundaries: increasing optimizer steps.
        values: the learning rate at each boundary.
    """

    def __init__(self, boundaries, values):
        if len(boundaries) != len(values) or len(boundaries) < 2:
            raise ValueError(
                "boundaries and values must have the same length >= 2. "
                f"Received: boundaries={boundaries}, values={values}"
            )
        if any(b1 <= b0 for b0, b1 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase. Received: boundaries={boundaries}")
        self.boundaries = [float(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.values[0], "float32")
        for (b0, v0), (b1, v1) in zip(
            zip(self.boundaries, self.values), zip(self.boundaries[1:], self.values[1:])
        ):
            t = ops.clip((step - b0) / (b1 - b0), 0.0, 1.0)
            lr = ops.where(step >= b0, v0 + t * (v1 - v0), lr)
        return lr

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values}
