"""
Devices: the ``tf.distribute`` strategy for ``GPU_COUNT``, and for
several machines the ``MultiWorkerMirroredStrategy`` that ``TF_CONFIG``
describes.

Multi-worker training starts the same program on every machine with
``TF_CONFIG`` naming the cluster and this machine's task (the standard
environment variable that Kubernetes, Vertex AI and Slurm launchers set)::

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]},
                "task": {"type": "worker", "index": 0}}'

Each worker trains ``GPU_COUNT`` replicas (its GPUs, or its CPU as one
replica) of ``IMAGES_PER_GPU`` images; the global batch is
``IMAGES_PER_GPU * GPU_COUNT * workers``. The chief (task "chief", or worker
0 when the cluster has no chief) alone writes checkpoints, logs and
config.json.
"""

import json
import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)

#: The process's MultiWorkerMirroredStrategy: TensorFlow allows one, created
#: before any other TensorFlow operation runs.
_MULTI_WORKER = {}


def cluster_from_env(environ=None):
    """The multi-worker task that ``TF_CONFIG`` describes, or None.

    Returns ``{"task_type", "task_index", "workers"}`` when TF_CONFIG names a
    cluster of two or more training tasks ("chief" and "worker"); None when
    TF_CONFIG is unset, empty or names a single task (ordinary training).
    Raises ValueError, saying what is wrong, for TF_CONFIG that is not JSON,
    lacks "cluster"/"task", names a task the cluster does not have, or uses
    parameter servers or evaluators (not supported: MultiWorkerMirroredStrategy
    trains on workers only).
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise ValueError("TF_CONFIG is not valid JSON ({}): {!r}. It should look like "
                         '{{"cluster": {{"worker": ["host0:2222", "host1:2222"]}}, '
                         '"task": {{"type": "worker", "index": 0}}}}'.format(error, text)) \
            from error
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) \
            or not isinstance(spec.get("task"), dict):
        raise ValueError('TF_CONFIG needs a "cluster" object and a "task" object; got {!r}'
                         .format(text))
    cluster, task = spec["cluster"], spec["task"]
    unsupported = sorted(set(cluster) - {"chief", "worker"})
    if unsupported:
        raise ValueError("TF_CONFIG's cluster has {} tasks; multi-worker training runs on "
                         "'chief' and 'worker' tasks only (MultiWorkerMirroredStrategy). "
                         "Remove them".format(", ".join(repr(t) for t in unsupported)))
    task_type, task_index = task.get("type"), task.get("index", 0)
    members = cluster.get(task_type)
    if not isinstance(members, list) or isinstance(task_index, bool) \
            or not isinstance(task_index, int) or not 0 <= task_index < len(members):
        raise ValueError("TF_CONFIG's task {!r} is not in its cluster {!r}".format(task, cluster))
    workers = sum(len(cluster.get(name) or []) for name in ("chief", "worker"))
    if workers < 2:
        return None
    return {"task_type": task_type, "task_index": task_index, "workers": workers}


def local_tf_configs(workers, ports=None):
    """``TF_CONFIG`` values for ``workers`` training processes on this
    machine (localhost, one free TCP port each unless ``ports`` are given),
    worker 0 the chief: a list of JSON strings, one per process, to try
    multi-worker training without a cluster::

        for index, value in enumerate(local_tf_configs(2)):
            subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=value))
    """
    if ports is None:
        import socket
        sockets = [socket.socket() for _ in range(workers)]
        try:
            for s in sockets:
                s.bind(("localhost", 0))
            ports = [s.getsockname()[1] for s in sockets]
        finally:
            for s in sockets:
                s.close()
    if len(ports) != workers:
        raise ValueError("{} ports for {} workers".format(len(ports), workers))
    hosts = ["localhost:{}".format(p) for p in ports]
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]


def multi_worker_strategy(config):
    """The process's ``MultiWorkerMirroredStrategy`` for the cluster in
    ``TF_CONFIG``, with ``config.GPU_COUNT`` local replicas (the first
    GPU_COUNT GPUs; on a machine without GPUs, its CPU as one replica).

    TensorFlow only lets the strategy be created before any TensorFlow
    operation has run: build the training model first thing (the samples
    do), or call this at the start of the program. Otherwise RuntimeError
    says so.
    """
    strategy = _MULTI_WORKER.get("strategy")
    if strategy is None:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus and config.GPU_COUNT != 1:
            raise ValueError(
                "GPU_COUNT={} but this worker has no GPU: without GPUs each worker "
                "trains one replica on its CPU; set GPU_COUNT=1".format(config.GPU_COUNT))
        if gpus and len(gpus) < config.GPU_COUNT:
            raise ValueError("GPU_COUNT={} but this worker has {} GPU(s); set GPU_COUNT to "
                             "the GPUs of each worker".format(config.GPU_COUNT, len(gpus)))
        try:
            if gpus:
                tf.config.set_visible_devices(gpus[:config.GPU_COUNT], "GPU")
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise RuntimeError(
                "TF_CONFIG asks for multi-worker training, but TensorFlow has already run "
                "operations in this process, and its collective operations can only be "
                "set up before the first one. Build the training model (or call "
                "mrcnn.training.start_multi_worker(config)) before anything else uses "
                "TensorFlow. ({})".format(error)) from error
        _MULTI_WORKER["strategy"] = strategy
        _MULTI_WORKER["gpu_count"] = config.GPU_COUNT
        logger.info("Multi-worker training: %d replicas, this task is %s %d",
                    strategy.num_replicas_in_sync, strategy.cluster_resolver.task_type,
                    strategy.cluster_resolver.task_id)
    elif _MULTI_WORKER["gpu_count"] != config.GPU_COUNT:
        raise ValueError("This process's multi-worker strategy has GPU_COUNT={} replicas "
                         "per worker; a model with GPU_COUNT={} cannot share it".format(
                             _MULTI_WORKER["gpu_count"], config.GPU_COUNT))
    return strategy


def start_multi_worker(config):
    """Set up multi-worker training now when ``TF_CONFIG`` asks for it, and
    return its strategy (None without TF_CONFIG). A program that uses
    TensorFlow before it builds the training model (an inference model for
    evaluation callbacks, say) calls this first: TensorFlow sets up its
    collectives only before its first operation."""
    if cluster_from_env() is None:
        return None
    return multi_worker_strategy(config)


def is_multi_worker(strategy):
    """True for a strategy spanning several worker processes."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(name) or []) for name in ("chief", "worker")) > 1


def is_chief(strategy):
    """True unless ``strategy`` is multi-worker and this process is not its
    chief (task "chief", or worker 0 of a cluster without one)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def distribution_strategy(config, mode="training"):
    """The tf.distribute strategy for a model.

    Training with ``TF_CONFIG`` naming a cluster of several tasks: the
    process's MultiWorkerMirroredStrategy (``multi_worker_strategy``).
    Otherwise the default strategy for GPU_COUNT 1 and a MirroredStrategy
    over GPU_COUNT devices for more (GPUs when there are that many, else
    logical CPU devices, which is how it is tested). Inference models are
    never multi-worker. Raises ValueError when fewer devices than GPU_COUNT
    are visible."""
    if mode == "training" and cluster_from_env() is not None:
        return multi_worker_strategy(config)
    if config.GPU_COUNT <= 1:
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus if len(gpus) >= config.GPU_COUNT else tf.config.list_logical_devices("CPU")
    if len(devices) < config.GPU_COUNT:
        raise ValueError(
            "GPU_COUNT={} but only {} GPU(s) and {} CPU device(s) are visible; set "
            "GPU_COUNT to at most the number of GPUs (and IMAGES_PER_GPU to the "
            "per-device batch)".format(config.GPU_COUNT, len(gpus),
                                       len(tf.config.list_logical_devices("CPU"))))
    if devices is not gpus:
        logger.warning("GPU_COUNT=%d: not enough GPUs, mirroring over %d CPU devices",
                       config.GPU_COUNT, config.GPU_COUNT)
    return tf.distribute.MirroredStrategy([d.name for d in devices[:config.GPU_COUNT]])
