"""The one place that picks a `tf.distribute` strategy (TPU > multi-worker > GPUs > default), and who writes."""

import json
import os

import tensorflow as tf

KINDS = ("auto", "default", "mirrored", "multi_worker", "tpu")


def get_strategy(kind="auto", devices=None):
    """Returns the strategy to train under.

    "auto" picks, in order: a TPU if one is reachable (`TPUClusterResolver`),
    `MultiWorkerMirroredStrategy` if `TF_CONFIG` names more than one worker,
    `MirroredStrategy` if there is more than one GPU, else the default
    (single-device) strategy. Batch sizes are global in every case, and
    `AdversarialModel` scales its loss per replica, so results do not depend
    on the choice.

    Args:
        kind: one of "auto", "default", "mirrored", "multi_worker", "tpu".
        devices: for "mirrored", the devices (e.g. ["/cpu:0", "/cpu:1"]).

    Returns:
        A `tf.distribute.Strategy`.
    """
    if kind not in KINDS:
        raise ValueError(f"strategy must be one of {KINDS}. Received: strategy={kind!r}")
    if kind == "auto":
        kind = _detect()
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def _detect():
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
        return "tpu"
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def is_chief(strategy):
    """Whether this process is the one that writes a multi-worker run's outputs.

    The chief is the task of type "chief", or worker 0 when the cluster has no
    chief; every process of a single-worker strategy is its own chief.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True  # one process drives every replica (TPUStrategy included)
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def write_dir(output_dir, strategy):
    """Where this process writes a run: `output_dir` on the chief, `output_dir/workers/<type>_<id>` elsewhere.

    Every worker of a synchronous run holds the same weights, but files
    written by several processes into one directory would clobber each
    other, so only the chief writes the run itself. The others keep their own
    checkpoints (from which they resume) under `workers/`.
    """
    if is_chief(strategy):
        return output_dir
    resolver = strategy.cluster_resolver
    return os.path.join(output_dir, "workers", f"{resolver.task_type}_{resolver.task_id}")
