"""
Devices: the ``tf.distribute`` strategy for ``GPU_COUNT``.
"""

import logging

import tensorflow as tf

logger = logging.getLogger(__name__)


def distribution_strategy(config):
    """The tf.distribute strategy for GPU_COUNT: the default strategy for 1,
    a MirroredStrategy over GPU_COUNT devices otherwise (GPUs when there are
    that many, else logical CPU devices, which is how it is tested).
    Raises ValueError when fewer devices than GPU_COUNT are visible."""
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
