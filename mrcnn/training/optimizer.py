"""
The optimizer every mode trains with: SGD with momentum, an optional
linear warm-up, gradient clipping and mixed-precision loss scaling, and
helpers to read and scale its learning rate while training.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from learning_rate / warmup_steps to learning_rate over
    ``warmup_steps`` steps (none when 0), then constant, times ``scale``.

    ``scale`` is a non-trainable variable (1.0 at the start) that callbacks
    change during training to decay the rate without recompiling; see
    ``set_learning_rate_scale``. The step is the optimizer's iteration
    count, which ``ModelBase.train`` sets to ``epoch * STEPS_PER_EPOCH``
    when training resumes, so a resumed run continues the schedule instead
    of warming up again.
    """

    def __init__(self, learning_rate, warmup_steps=0):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.scale = tf.Variable(1.0, trainable=False, dtype=tf.float32,
                                 name="learning_rate_scale")

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        ramp = tf.minimum(1.0, step / float(max(self.warmup_steps, 1)))
        return self.learning_rate * ramp * self.scale

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="mrcnn")
class SGD(keras.optimizers.SGD):
    """Keras SGD for gradients that the caller has already summed over the
    replicas of a distribution strategy (``DetectionModel.train_step`` does,
    when ``SUMS_REPLICA_GRADIENTS`` is set on its optimizer).

    Keras clips each replica's gradient before summing them, so with
    several replicas ``clipnorm`` would bound a part of the gradient rather
    than the gradient of the global batch. Summing first and clipping the
    sum makes a step on N replicas the step one device takes on the same
    global batch. Identical to ``keras.optimizers.SGD`` without a strategy.
    """

    SUMS_REPLICA_GRADIENTS = True

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return grads_and_vars


def build_optimizer(config, learning_rate):
    """SGD with momentum LEARNING_MOMENTUM and per-tensor gradient clipping at
    GRADIENT_CLIP_NORM (as the original), with the optional linear warm-up of
    LEARNING_RATE_WARMUP_STEPS (a ``WarmupSchedule``, also used without
    warm-up so callbacks can scale the rate) and, with float16
    MIXED_PRECISION, dynamic loss scaling (bfloat16 has float32's exponent
    range and needs none). The gradients are summed over replicas before
    clipping (see ``SGD``)."""
    rate = WarmupSchedule(learning_rate, config.LEARNING_RATE_WARMUP_STEPS)
    optimizer = SGD(learning_rate=rate, momentum=config.LEARNING_MOMENTUM,
                    clipnorm=config.GRADIENT_CLIP_NORM)
    if config.dtype_policy_name() == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _inner_optimizer(optimizer):
    """The optimizer that owns the learning rate (unwraps loss scaling)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def set_learning_rate_scale(optimizer, scale):
    """Multiply the learning rate of an optimizer made by ``build_optimizer``
    by ``scale`` (relative to the rate given to train(), not cumulative).
    Raises TypeError for an optimizer with another kind of rate."""
    schedule = getattr(_inner_optimizer(optimizer), "_learning_rate", None)
    if not isinstance(schedule, WarmupSchedule):
        raise TypeError("set_learning_rate_scale() needs an optimizer from "
                        "training.build_optimizer(); got learning rate {!r}".format(schedule))
    schedule.scale.assign(float(scale))


def current_learning_rate(optimizer):
    """The learning rate the next step will use, as a Python float."""
    inner = _inner_optimizer(optimizer)
    rate = inner._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return float(rate(inner.iterations.value))
    return float(keras.ops.convert_to_numpy(rate))
