"""
Training machinery shared by every model mode: the Keras model class with
its own train/test step, the optimizer, layer selection, checkpoint and log
directory conventions, and the distribution strategy.

Nothing here knows about Mask R-CNN's heads; a mode supplies the graph
(whose loss outputs are named layers), a regex for its "heads" and a
checkpoint file prefix.
"""

import datetime
import logging
import os
import re

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


############################################################
#  Keras model with named-loss outputs
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionModel(keras.Model):
    """A functional Keras model whose training step minimises the loss
    outputs of the graph itself.

    Build it like ``keras.Model(inputs, outputs, name=...)`` and pass
    ``loss_names``: the names of the layers among the outputs that produce
    scalar losses. ``train_step`` minimises
    ``sum(loss_weights[name] * loss) + weight_decay * sum(kernel ** 2)``
    and reports each named loss (and its validation counterpart) in the
    progress bar and History. Weight decay is the plain L2 penalty on the
    trainable convolution/dense kernels; the original divided each term by
    the kernel's size, which made it orders of magnitude weaker than stated,
    and also decayed biases.

    ``get_layer(name)`` also finds layers inside nested models (the RPN's
    ``rpn_conv_shared`` lives in ``rpn_model``).
    """

    def __init__(self, *args, loss_names=(), loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_names = list(loss_names)
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0))
                             for name in self.loss_names}
        self.weight_decay = float(weight_decay)
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ["loss"] + self.loss_names}

    def get_config(self):
        config = super().get_config()
        config.update({"loss_names": self.loss_names, "loss_weights": self.loss_weights,
                       "weight_decay": self.weight_decay})
        return config

    def get_layer(self, name=None, index=None):
        if name is None or index is not None:
            return super().get_layer(name=name, index=index)
        found = _find_layer(self, name)
        if found is None:
            raise ValueError("No such layer: {}. Top-level layers: {}".format(
                name, ", ".join(l.name for l in self.layers)))
        return found

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Keras's ``save_weights``, except that a ``.h5``/``.hdf5`` path that
        does not end in ``.weights.h5`` (the reference's
        ``save_weights("mask_rcnn_shapes.h5")``) writes the legacy Keras 2
        layout of the checkpoints with ``mrcnn.weights.save_weights``;
        ``overwrite=False`` then raises FileExistsError for an existing file."""
        if not _legacy_h5_path(filepath):
            return super().save_weights(filepath, overwrite=overwrite,
                                        max_shard_size=max_shard_size)
        if max_shard_size is not None:
            raise ValueError("max_shard_size needs a .weights.h5 or .weights.json path; "
                             "{} is a legacy .h5 file".format(filepath))
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError("{} exists and overwrite=False".format(filepath))
        from mrcnn import weights  # mrcnn.weights needs only keras; keep imports one-way
        weights.save_weights(self, filepath)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Keras's ``load_weights``, except that a legacy ``.h5``/``.hdf5``
        path (not ``.weights.h5``) is read by ``mrcnn.weights.load_weights``
        (by order, or ``by_name=True``); that returns its LoadReport."""
        if not _legacy_h5_path(filepath):
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        by_name = bool(kwargs.pop("by_name", False))
        if kwargs:
            raise ValueError("Invalid keyword arguments for a legacy .h5 file: {}".format(
                kwargs))
        from mrcnn import weights
        return weights.load_weights(self, filepath, by_name=by_name,
                                    skip_mismatch=skip_mismatch)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _named_losses(self, outputs):
        by_name = dict(zip(self.output_names, outputs))
        missing = [n for n in self.loss_names if n not in by_name]
        if missing:
            raise ValueError("The model has no outputs named {}; its outputs are {}".format(
                missing, self.output_names))
        return {name: by_name[name] for name in self.loss_names}

    def _total_loss(self, losses):
        total = tf.add_n([tf.cast(losses[n], tf.float32) * self.loss_weights[n]
                          for n in self.loss_names])
        if self.weight_decay > 0:
            kernels = [v for v in self.trainable_variables if v.name == "kernel"]
            if kernels:
                total += self.weight_decay * tf.add_n(
                    [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels])
        return total

    def _update_trackers(self, total, losses):
        self._trackers["loss"].update_state(total)
        for name in self.loss_names:
            self._trackers[name].update_state(losses[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            losses = self._named_losses(outputs)
            total = self._total_loss(losses)
            # Gradients are summed over replicas by the optimizer.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return self._update_trackers(total, losses)

    def test_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        outputs = self(inputs, training=False)
        losses = self._named_losses(outputs)
        return self._update_trackers(self._total_loss(losses), losses)


############################################################
#  Loss layers
############################################################

# Loss layer name -> function, for LossLayer(name=...) without a function
# (Mask R-CNN's five names; see mrcnn.losses).
_NAMED_LOSS_FUNCTIONS = {}


def register_loss_function(name, function):
    """Make ``LossLayer(name=name)`` without a function call ``function``."""
    _NAMED_LOSS_FUNCTIONS[name] = function
    return function


@keras.saving.register_keras_serializable(package="mrcnn")
class LossLayer(keras.layers.Layer):
    """A named scalar loss in a training graph: ``LossLayer(fn, name=...)``
    outputs ``fn(*inputs)``, a float32 scalar that ``DetectionModel``
    minimises when ``name`` is among its ``loss_names``.

    fn: the loss function; for a model that is saved and reloaded it must be
        serialisable (a module-level function registered with
        ``keras.saving.register_keras_serializable``), which Keras's safe
        mode loads. Without ``fn`` the layer's name selects a function
        registered with ``register_loss_function`` (Mask R-CNN's
        ``rpn_class_loss`` ... ``mrcnn_mask_loss``, as the layer was built
        before it took a function).
    """

    def __init__(self, fn=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._named = fn is None
        if fn is None:
            if self.name not in _NAMED_LOSS_FUNCTIONS:
                raise ValueError(
                    "LossLayer {!r} has no loss function: pass fn=..., or its name must be one "
                    "of the registered names {}".format(self.name, sorted(_NAMED_LOSS_FUNCTIONS)))
            fn = _NAMED_LOSS_FUNCTIONS[self.name]
        elif isinstance(fn, dict):
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError("LossLayer {!r}: fn must be callable, got {!r}".format(
                self.name, fn))
        self.fn = fn

    def get_config(self):
        config = super().get_config()
        config["fn"] = None if self._named else keras.saving.serialize_keras_object(self.fn)
        return config

    def call(self, inputs):
        return self.fn(*inputs)

    def compute_output_shape(self, input_shape):
        return ()


def _legacy_h5_path(filepath):
    """A path (str or PathLike) ending .h5 or .hdf5 but not .weights.h5."""
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    path = os.fsdecode(os.fspath(filepath)).lower()
    return path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")


def _find_layer(model, name):
    """Depth-first search for a layer called ``name`` in model and nested models."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


############################################################
#  Optimizer
############################################################

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


def build_optimizer(config, learning_rate):
    """SGD with momentum LEARNING_MOMENTUM and per-tensor gradient clipping at
    GRADIENT_CLIP_NORM (as the original), with the optional linear warm-up of
    LEARNING_RATE_WARMUP_STEPS (a ``WarmupSchedule``, also used without
    warm-up so callbacks can scale the rate) and, with float16
    MIXED_PRECISION, dynamic loss scaling (bfloat16 has float32's exponent
    range and needs none)."""
    rate = WarmupSchedule(learning_rate, config.LEARNING_RATE_WARMUP_STEPS)
    optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=config.LEARNING_MOMENTUM,
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


############################################################
#  Layer selection
############################################################

def backbone_presets(heads_regex):
    """The reference's ``layers=`` presets for a model whose head layers
    match ``heads_regex``."""
    return {
        "heads": heads_regex,
        "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + heads_regex,
        "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + heads_regex,
        "5+": r"(res5.*)|(bn5.*)|" + heads_regex,
        "all": ".*",
    }


def _is_batch_norm(layer):
    inner = getattr(layer, "layer", None)
    return isinstance(layer, keras.layers.BatchNormalization) or \
        isinstance(inner, keras.layers.BatchNormalization)


def set_trainable(model, layer_regex, train_bn=True, verbose=0, indent=0):
    """Mark as trainable exactly the layers whose names full-match
    ``layer_regex``; all others frozen. Nested models are searched (their
    own name does not matter, their layers' names do). With
    ``train_bn=False`` batch-normalisation layers stay frozen whatever the
    regex says (gamma and beta included; the original still trained
    those). Wrapper layers (RoiDistributed) are matched by their own name.

    Returns the names of the layers with weights that are now trainable.
    """
    pattern = re.compile(layer_regex)
    trained = []
    model.trainable = True
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if verbose > 0:
                print("{}In model: {}".format(" " * indent, layer.name))
            trained += set_trainable(layer, layer_regex, train_bn, verbose, indent + 4)
            continue
        if not layer.weights:
            continue
        trainable = bool(pattern.fullmatch(layer.name))
        if train_bn is False and _is_batch_norm(layer):
            trainable = False
        layer.trainable = trainable
        if trainable:
            trained.append(layer.name)
            if verbose > 0:
                print("{}{:20}   ({})".format(" " * indent, layer.name,
                                              layer.__class__.__name__))
    return trained


############################################################
#  Log directories and checkpoints
############################################################

def log_dir_name(config_name, now):
    """``<name><YYYYmmddTHHMM>``, the reference's log directory name."""
    return "{}{:%Y%m%dT%H%M}".format(config_name.lower(), now)


def checkpoint_pattern(prefix, config_name):
    """Regex of a complete checkpoint file name, with the epoch as group 1."""
    return re.compile(r"{}_{}_(\d{{4}})\.h5$".format(re.escape(prefix),
                                                    re.escape(config_name.lower())))


def parse_checkpoint_path(path, prefix="mask_rcnn"):
    """(datetime of the run, epoch) from ``.../<name>YYYYmmddTHHMM/<prefix>_<name>_EEEE.h5``,
    or None when the path does not follow the convention."""
    m = re.match(r".*[/\\][\w.-]+?(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]" +
                 re.escape(prefix) + r"_[\w.-]+_(\d{4})\.h5$", os.fspath(path))
    if not m:
        return None
    when = datetime.datetime(*(int(m.group(i)) for i in range(1, 6)))
    return when, int(m.group(6))


def find_last_checkpoint(model_dir, config_name, prefix="mask_rcnn"):
    """Path of the newest complete checkpoint of the newest run of
    ``config_name`` under ``model_dir``.

    Run directories are ``<name><YYYYmmddTHHMM>``; newer runs win; a run
    directory without a complete checkpoint (an aborted start) is passed
    over for the previous one. Only files named exactly
    ``<prefix>_<name>_<epoch:04d>.h5`` count, so temporary files of an
    interrupted save are never picked. Raises FileNotFoundError (errno
    ENOENT) naming the directory when there is none.
    """
    import errno
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(errno.ENOENT, "Could not find model directory under {}".format(
            model_dir))
    key = config_name.lower()
    run_re = re.compile(re.escape(key) + r"\d{8}T\d{4}$")
    runs = sorted(d for d in os.listdir(model_dir)
                  if run_re.match(d) and os.path.isdir(os.path.join(model_dir, d)))
    if not runs:
        raise FileNotFoundError(errno.ENOENT, "Could not find model directory under {}".format(
            model_dir))
    pattern = checkpoint_pattern(prefix, config_name)
    for run in reversed(runs):
        run_dir = os.path.join(model_dir, run)
        checkpoints = sorted(f for f in os.listdir(run_dir) if pattern.match(f))
        if checkpoints:
            return os.path.join(run_dir, checkpoints[-1])
    raise FileNotFoundError(errno.ENOENT, "Could not find weight files in {}".format(
        os.path.join(model_dir, runs[-1])))


def remove_partial_checkpoints(log_dir, prefix, config_name):
    """Delete the temporary files that an interrupted checkpoint save left in
    ``log_dir`` (``.<prefix>_<name>_EEEE.h5.<12 hex>.tmp``, the names
    ``weights.save_weights`` writes to before its atomic rename; such a file
    is never a complete checkpoint). Other files are untouched. Returns the
    removed paths."""
    pattern = re.compile(r"\.{}_{}_\d{{4}}\.h5\.[0-9a-f]{{12}}\.tmp$".format(
        re.escape(prefix), re.escape(config_name.lower())))
    if not os.path.isdir(log_dir):
        return []
    removed = []
    for name in sorted(os.listdir(log_dir)):
        if pattern.match(name):
            path = os.path.join(log_dir, name)
            os.remove(path)
            removed.append(path)
            logger.warning("Removed %s, left by an interrupted checkpoint save", path)
    return removed


class CheckpointCallback(keras.callbacks.Callback):
    """Save the weights at the end of every epoch to
    ``checkpoint_path.format(epoch=epoch + 1)`` with ``save_fn(path)``
    (an atomic writer), so epoch numbers on disk count completed epochs."""

    def __init__(self, checkpoint_path, save_fn):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.save_fn = save_fn

    def on_epoch_end(self, epoch, logs=None):
        path = self.checkpoint_path.format(epoch=epoch + 1)
        self.save_fn(path)
        logger.info("Saved checkpoint %s", path)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose total or named loss is NaN or
    Inf, raising FloatingPointError that names the losses. The exception
    ends fit() before the epoch's checkpoint is written, so the last
    checkpoint on disk holds the last good weights."""

    def on_train_batch_end(self, batch, logs=None):
        import math
        bad = {k: float(v) for k, v in (logs or {}).items()
               if k.endswith("loss") and not math.isfinite(float(v))}
        if bad:
            self.model.stop_training = True
            raise FloatingPointError(
                "Training stopped at batch {}: non-finite loss {}. The last checkpoint "
                "holds the last good weights; lower the learning rate (or raise "
                "LEARNING_RATE_WARMUP_STEPS) and resume from it.".format(
                    batch, ", ".join("{}={}".format(k, v) for k, v in sorted(bad.items()))))


class TimeBudget(keras.callbacks.Callback):
    """Stop training so that it ends within ``seconds`` of wall time.

    The clock starts at ``start`` (a ``time.time()`` value, e.g. taken before
    building the datasets, so set-up counts against the budget) or, by
    default, at the start of fit(). Training stops after the batch at which
    the time left no longer covers the work done at the end of an epoch
    (validation, checkpoint, other callbacks), as long as the last one took; the
    epoch in progress is cut short there and still validated and
    checkpointed, so the run finishes near the budget rather than one
    validation past it.

    decay_at: fractions of the budget (e.g. ``(0.8,)``) after which the
        learning rate is multiplied by ``decay_factor`` once more each, the
        usual step decay of detection training expressed in wall time, for
        runs whose length is a time budget rather than a number of steps.
        Needs an optimizer from ``build_optimizer`` (every ``train()``).
    """

    def __init__(self, seconds, decay_at=(), decay_factor=0.1, start=None):
        super().__init__()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not seconds > 0:
            raise ValueError("TimeBudget needs a positive number of seconds, got {!r}"
                             .format(seconds))
        if start is not None and (isinstance(start, bool)
                                  or not isinstance(start, (int, float))):
            raise ValueError("TimeBudget start must be a time.time() value or None, got "
                             "{!r}".format(start))
        self.seconds = float(seconds)
        self.decay_at = sorted(float(f) for f in decay_at)
        if any(not 0.0 < f < 1.0 for f in self.decay_at):
            raise ValueError("decay_at takes fractions of the budget between 0 and 1, got "
                             "{}".format(list(decay_at)))
        self.decay_factor = float(decay_factor)
        self.given_start = start
        self.start = None
        self.decays_done = 0
        # Time between the last epoch's last batch and the next epoch's
        # start (validation, checkpoint, callbacks). The latest gap is kept:
        # the first also holds one-time tracing of the validation step.
        self.epoch_end_seconds = 0.0
        self._last_batch_end = None

    def on_train_begin(self, logs=None):
        import time
        self.start = time.time() if self.given_start is None else float(self.given_start)
        self.decays_done = 0
        self._last_batch_end = None
        if self.decay_at:
            set_learning_rate_scale(self.model.optimizer, 1.0)

    def on_epoch_begin(self, epoch, logs=None):
        import time
        if self._last_batch_end is not None:
            self.epoch_end_seconds = time.time() - self._last_batch_end
            self._last_batch_end = None

    def on_train_batch_end(self, batch, logs=None):
        import time
        now = time.time()
        self._last_batch_end = now
        elapsed = now - self.start
        due = sum(1 for f in self.decay_at if elapsed >= f * self.seconds)
        if due > self.decays_done:
            self.decays_done = due
            set_learning_rate_scale(self.model.optimizer, self.decay_factor ** due)
            logger.info("Learning rate scaled by %g after %.0f s", self.decay_factor ** due,
                        elapsed)
        if elapsed + self.epoch_end_seconds >= self.seconds:
            self.model.stop_training = True


############################################################
#  Devices
############################################################

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
